"""multihome: several network interfaces per Kubernetes pod, a drop-in for Multus-CNI."""

__version__ = "0.1.0"

#: Set by the launcher `multihome install --thin-python` writes: the version of
#: the multihome that wrote it, whose VERSION answer the launcher gives.
LAUNCHER_ENV = "MULTIHOME_LAUNCHER_VERSION"
