"""The local backend: JupyterHub and its proxy on this machine, each user's server a local
process in the chosen environment (a virtualenv), datasets mounted with FUSE."""
