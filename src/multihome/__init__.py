"""multihome: several network interfaces per Kubernetes pod, a drop-in for Multus-CNI."""

__version__ = "0.1.0"
