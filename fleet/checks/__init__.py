"""The checks of KB Q128961: binding, ipconfig, ping, smtp (on the host) and reach (from the runner)."""
