"""What tests share: the repository's paths, a local hub, a browser, a Kubernetes API
emulator and its test kubelet, a GCS emulator, stand-ins for what this machine cannot
download (Fiji), and small clients (kernels, the tasks service). Tests import these and
never each other."""
