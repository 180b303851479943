"""Run inside 3D Slicer by postBuild (headless, under Xvfb).

--install      install the SlicerJupyter extension into Slicer's own tree
--kernel PFX   write the Slicer kernel spec and install it under PFX/share/jupyter/kernels
"""
import os
import subprocess
import sys

import slicer

args = sys.argv[1:]
em = slicer.app.extensionsManagerModel()
em.interactive = False
home = os.path.realpath(slicer.app.slicerHome)
install_path = slicer.app.extensionsInstallPath  # a Qt property (a method in some versions)
install_path = os.path.realpath(install_path() if callable(install_path) else install_path)
if not install_path.startswith(home + os.sep):
    print(f"SlicerJupyter would go to {install_path}, outside Slicer's tree {home}", file=sys.stderr)
    sys.exit(1)
if args[0] == "--install":
    if not em.isExtensionInstalled("SlicerJupyter"):
        em.updateExtensionsMetadataFromServer(True, True)
        if not em.downloadAndInstallExtensionByName("SlicerJupyter", True, True):
            print("oggmhub-missing: the SlicerJupyter extension (Slicer's extension server)", file=sys.stderr)
            sys.exit(3)
elif args[0] == "--kernel":
    prefix = args[1]
    kernel = slicer.modules.jupyterkernel
    if kernel.updateKernelSpec() is False:  # returns nothing in older SlicerJupyter
        sys.exit("could not write the Slicer kernel spec")
    subprocess.check_call([os.path.join(prefix, "bin", "jupyter"), "kernelspec", "install",
                           kernel.kernelFolderPath(), "--replace", "--prefix", prefix])
slicer.app.exit(0)
