param($p)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Each source in its own try: when CIM or WMI is broken the next one answers, down to the
# text of ipconfig /all, and "fallback" says why the richer ones did not.
# Flat fields only: ConvertTo-Json's default depth turns nested CIM objects into type names.
$failed = @()
if (Get-Command Get-NetIPAddress -ErrorAction SilentlyContinue) {
    try {
        # -IncludeHidden: the failover cluster's NetFT adapter (169.254.x.x by design) is hidden.
        # Routes from the active store only: a persistent route left behind (by a NIC that
        # joined a team) is not in use; all routes, then filtered, so that none is no error.
        return @{
            source = 'NetTCPIP'
            adapters = Get-NetAdapter -IncludeHidden | Select-Object Name, InterfaceDescription, Status, MacAddress, ifIndex, ComponentID, Hidden
            addresses = Get-NetIPAddress -AddressFamily IPv4 | Select-Object InterfaceIndex, IPAddress, PrefixLength, PrefixOrigin, AddressState
            interfaces = Get-NetIPInterface -AddressFamily IPv4 | Select-Object InterfaceIndex, InterfaceAlias, Dhcp, ConnectionState, InterfaceMetric
            routes = Get-NetRoute -AddressFamily IPv4 -PolicyStore ActiveStore | Where-Object { $_.DestinationPrefix -eq '0.0.0.0/0' } | Select-Object InterfaceIndex, NextHop, RouteMetric
            dns = Get-DnsClientServerAddress -AddressFamily IPv4 | Select-Object InterfaceIndex, ServerAddresses
        }
    } catch { $failed += 'NetTCPIP: ' + $_.Exception.Message }
}
# PowerShell 2.0 (Server 2008 R2), or CIM broken: WMI has it all, IPv6 mixed into the same arrays.
try {
    return @{
        source = 'Win32_NetworkAdapterConfiguration'
        adapters = Get-WmiObject Win32_NetworkAdapter -Filter 'NetConnectionID IS NOT NULL' | Select-Object NetConnectionID, Description, NetConnectionStatus, MACAddress, InterfaceIndex, GUID
        configs = Get-WmiObject Win32_NetworkAdapterConfiguration -Filter 'IPEnabled=TRUE' | Select-Object InterfaceIndex, Description, SettingID, MACAddress, IPAddress, IPSubnet, DefaultIPGateway, GatewayCostMetric, IPConnectionMetric, DHCPEnabled, DNSServerSearchOrder
        fallback = ($failed -join '; ')
    }
} catch { $failed += 'WMI: ' + $_.Exception.Message }
# A broken WMI repository: the text of ipconfig /all is the last resort.
@{ source = 'ipconfig /all'; text = (& ipconfig.exe /all | Out-String); fallback = ($failed -join '; ') }
