// Invert an image and measure its mean intensity: a Fiji script with SciJava parameters.
// In Fiji the #@ lines declare the parameters; oggmhub's task runner reads the same lines
// (oggmhub.tasks.spec) and, where Debian's ImageJ 1 stands in for Fiji, turns them into
// variable assignments before the macro runs.
#@ File (label="Input image", style="open") input
#@ File (label="Result image", style="save") output
#@ Integer (label="Blur radius", min=0, max=10, value=1) radius
#@ String (label="Output format", choices={"Tiff", "PNG"}, value="Tiff") format
setBatchMode(true);
open(input);
if (radius > 0) run("Gaussian Blur...", "sigma=" + radius);
run("Invert");
getStatistics(area, mean);
print("mean after invert: " + mean);
saveAs(format, output);
close();
