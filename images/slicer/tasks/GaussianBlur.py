#!/usr/bin/env python3
"""Gaussian Blur, a Slicer Execution Model CLI implemented with SimpleITK (no Slicer
needed). ``GaussianBlur.py --xml`` prints its description; ``GaussianBlur.py [--sigma S]
INPUT OUTPUT`` runs it. The arguments are parsed from GaussianBlur.xml by ctk-cli."""

import os
import sys


def main():
    from ctk_cli import CLIArgumentParser

    args = CLIArgumentParser(os.path.splitext(os.path.abspath(__file__))[0] + ".xml").parse_args()
    import SimpleITK as sitk

    image = sitk.ReadImage(args.inputVolume)
    blurred = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), args.sigma)
    sitk.WriteImage(sitk.Cast(blurred, image.GetPixelID()), args.outputVolume)
    print(f"blurred {args.inputVolume} (size {image.GetSize()}) with sigma {args.sigma}")


if __name__ == "__main__":
    sys.exit(main())
