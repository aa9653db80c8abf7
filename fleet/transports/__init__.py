"""Transports: how fleet runs a command on a host (local, ssh, paramiko, winrm)."""
