// postBuild's check that Fiji runs macros headless: a blurred ramp has the ramp's mean
newImage("ramp", "8-bit ramp", 128, 128, 1);
run("Gaussian Blur...", "sigma=2");
getStatistics(area, mean);
print("Fiji " + getVersion() + ": headless macro OK, mean " + d2s(mean, 1));
