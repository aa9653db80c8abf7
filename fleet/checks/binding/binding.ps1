param($p)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Keyed on ComponentID (ms_tcpip, ms_msclient, ...): DisplayName is localised.
if (Get-Command Get-NetAdapterBinding -ErrorAction SilentlyContinue) {
    return @{
        source = 'Get-NetAdapterBinding'
        adapters = Get-NetAdapter | Select-Object Name, InterfaceDescription, Status, MacAddress, ifIndex, InterfaceGuid
        bindings = Get-NetAdapterBinding | Select-Object Name, ComponentID, Enabled
    }
}
# Server 2008 R2: each service's Linkage\Bind lists the adapters (by GUID) it is bound to.
$bind = @{}
$services = @{ms_tcpip = 'Tcpip'; ms_tcpip6 = 'Tcpip6'; ms_msclient = 'LanmanWorkstation'; ms_server = 'LanmanServer'}
foreach ($id in $services.Keys) {
    $k = Get-ItemProperty -Path ('HKLM:\SYSTEM\CurrentControlSet\Services\' + $services[$id] + '\Linkage') -Name Bind -ErrorAction SilentlyContinue
    if ($k) { $bind[$id] = $k.Bind } else { $bind[$id] = @() }
}
@{
    source = 'registry'
    adapters = Get-WmiObject Win32_NetworkAdapter -Filter 'NetConnectionID IS NOT NULL' | Select-Object NetConnectionID, Description, NetConnectionStatus, MACAddress, InterfaceIndex, GUID
    bind = $bind
}
