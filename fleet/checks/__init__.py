"""The checks of KB Q128961: binding, ipconfig, ping, smtp on the host; reach from the runner."""
