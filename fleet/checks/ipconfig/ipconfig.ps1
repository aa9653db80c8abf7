param($p)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Flat fields only: ConvertTo-Json's default depth turns nested CIM objects into type names.
if (Get-Command Get-NetIPAddress -ErrorAction SilentlyContinue) {
    return @{
        source = 'NetTCPIP'
        adapters = Get-NetAdapter | Select-Object Name, InterfaceDescription, Status, MacAddress, ifIndex
        addresses = Get-NetIPAddress -AddressFamily IPv4 | Select-Object InterfaceIndex, InterfaceAlias, IPAddress, PrefixLength, PrefixOrigin
        interfaces = Get-NetIPInterface -AddressFamily IPv4 | Select-Object InterfaceIndex, InterfaceAlias, Dhcp, ConnectionState
        routes = Get-NetRoute -AddressFamily IPv4 -DestinationPrefix '0.0.0.0/0' -ErrorAction SilentlyContinue | Select-Object InterfaceIndex, NextHop, RouteMetric
        dns = Get-DnsClientServerAddress -AddressFamily IPv4 | Select-Object InterfaceIndex, InterfaceAlias, ServerAddresses
    }
}
# PowerShell 2.0 (Server 2008 R2): WMI has it all, IPv6 mixed into the same arrays.
try {
    @{
        source = 'Win32_NetworkAdapterConfiguration'
        adapters = Get-WmiObject Win32_NetworkAdapter -Filter 'NetConnectionID IS NOT NULL' | Select-Object NetConnectionID, Description, NetConnectionStatus, MACAddress, InterfaceIndex, GUID
        configs = Get-WmiObject Win32_NetworkAdapterConfiguration -Filter 'IPEnabled=TRUE' | Select-Object InterfaceIndex, Description, SettingID, MACAddress, IPAddress, IPSubnet, DefaultIPGateway, DHCPEnabled, DNSServerSearchOrder
    }
} catch {
    # A broken WMI repository: the text of ipconfig /all is the last resort.
    @{ source = 'ipconfig /all'; text = (& ipconfig.exe /all | Out-String) }
}
