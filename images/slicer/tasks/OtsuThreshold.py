#!/usr/bin/env python3
"""Otsu Threshold, a Slicer Execution Model CLI implemented with SimpleITK (no Slicer
needed). ``OtsuThreshold.py --xml`` prints its description; ``OtsuThreshold.py [--bins N]
[--median-radius R] [--foreground above|below] INPUT OUTPUT`` runs it."""

import os
import sys


def main():
    from ctk_cli import CLIArgumentParser

    args = CLIArgumentParser(os.path.splitext(os.path.abspath(__file__))[0] + ".xml").parse_args()
    import SimpleITK as sitk

    image = sitk.ReadImage(args.inputVolume)
    if args.medianRadius > 0:
        image = sitk.Median(image, [args.medianRadius] * image.GetDimension())
    inside, outside = (0, 1) if args.foreground == "above" else (1, 0)
    f = sitk.OtsuThresholdImageFilter()
    f.SetInsideValue(inside)
    f.SetOutsideValue(outside)
    f.SetNumberOfHistogramBins(args.numberOfHistogramBins)
    labels = f.Execute(image)
    sitk.WriteImage(labels, args.outputVolume)
    count = int(sitk.GetArrayViewFromImage(labels).sum())
    print(f"threshold {f.GetThreshold():g}: {count} foreground voxels")


if __name__ == "__main__":
    sys.exit(main())
