"""fleet: audit the network health of a mail-server fleet over SSH and WinRM.

The procedure of Microsoft KB Q128961 ("Windows Sockets error: Failed in
Connect"), done remotely on every server at once: TCP/IP bound, IP
configuration sane, peers answer ping, peers answer SMTP on port 25.
"""

__version__ = "0.1.0"
