param($p)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Each source in its own try: when CIM or WMI is broken the next one answers, and
# "fallback" says why the richer ones did not.
# Keyed on ComponentID (ms_tcpip, ms_msclient, vms_pp, ms_implat, ...): DisplayName is localised.
$failed = @()
if (Get-Command Get-NetAdapterBinding -ErrorAction SilentlyContinue) {
    try {
        return @{
            source = 'Get-NetAdapterBinding'
            adapters = Get-NetAdapter | Select-Object Name, InterfaceDescription, Status, MacAddress, ComponentID, Hidden
            bindings = Get-NetAdapterBinding | Select-Object Name, ComponentID, Enabled
        }
    } catch { $failed += 'Get-NetAdapterBinding: ' + $_.Exception.Message }
}
# Server 2008 R2, or CIM broken: each service's Linkage\Bind lists the adapters (by GUID) it is bound to.
$bind = @{}
$services = @{ms_tcpip = 'Tcpip'; ms_tcpip6 = 'Tcpip6'; ms_msclient = 'LanmanWorkstation'; ms_server = 'LanmanServer'}
foreach ($id in $services.Keys) {
    $k = Get-ItemProperty -Path ('HKLM:\SYSTEM\CurrentControlSet\Services\' + $services[$id] + '\Linkage') -Name Bind -ErrorAction SilentlyContinue
    if ($k) { $bind[$id] = $k.Bind } else { $bind[$id] = @() }
}
$from = 'Win32_NetworkAdapter'
try {
    $adapters = @(Get-WmiObject Win32_NetworkAdapter -Filter 'NetConnectionID IS NOT NULL' | Select-Object NetConnectionID, Description, NetConnectionStatus, MACAddress, GUID)
} catch {
    $failed += 'Win32_NetworkAdapter: ' + $_.Exception.Message
    # .NET asks the IP Helper API, not WMI; its Id is the adapter GUID the registry names.
    $from = 'NetworkInterface'
    $adapters = @(foreach ($n in [Net.NetworkInformation.NetworkInterface]::GetAllNetworkInterfaces()) {
        if ('Loopback', 'Tunnel' -notcontains [string]$n.NetworkInterfaceType) {
            @{NetConnectionID = $n.Name; Description = $n.Description; NetConnectionStatus = 7 - 5 * ([string]$n.OperationalStatus -eq 'Up'); MACAddress = [string]$n.GetPhysicalAddress(); GUID = $n.Id}
        }
    })
}
@{
    source = 'registry'
    adapters = $adapters
    adapters_from = $from
    bind = $bind
    fallback = ($failed -join '; ')
}
