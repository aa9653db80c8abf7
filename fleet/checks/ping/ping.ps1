param($p)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Win32_PingStatus, one echo per query: ping.exe exits 0 even on "Destination host unreachable".
$target = [string]$p.target
$address = $target
$from = ''
if ($target -eq 'gateway') {
    # The gateway the host's own traffic takes: active routes only (a persistent route left
    # behind is not in use), the lowest RouteMetric + InterfaceMetric.  Each source in its
    # own try: a broken CIM/WMI repository (or none, PowerShell 2.0) falls through to .NET.
    $address = $null
    $best = 1e9
    try {
        $im = @{}
        foreach ($i in @(Get-NetIPInterface -AddressFamily IPv4)) { $im[$i.InterfaceIndex] = $i.InterfaceMetric }
        foreach ($r in @(Get-NetRoute -AddressFamily IPv4 -PolicyStore ActiveStore)) {
            $m = $r.RouteMetric + $im[$r.InterfaceIndex]
            if ($r.DestinationPrefix -eq '0.0.0.0/0' -and $r.NextHop -ne '0.0.0.0' -and $m -lt $best) { $best = $m; $address = $r.NextHop }
        }
        $from = 'Get-NetRoute'
    } catch { }
    if (-not $from) {
        # .NET asks the IP Helper API, not WMI: the first IPv4 gateway of an adapter that is up
        # (it knows no metrics; PowerShell 2.0 has no Get-NetRoute).
        foreach ($n in [Net.NetworkInformation.NetworkInterface]::GetAllNetworkInterfaces()) {
            foreach ($g in $n.GetIPProperties().GatewayAddresses) {
                $t = [string]$g.Address
                if (-not $address -and $t -match '^\d+\.\d+\.\d+\.\d+$' -and $t -ne '0.0.0.0' -and [string]$n.OperationalStatus -eq 'Up') { $address = $t }
            }
        }
        $from = 'NetworkInterface'
    }
    if (-not $address) { return @{target = $target; error = 'no default gateway'; gateway_from = $from} }
}
# A WQL string literal: the target stays data.
$q = $address.Replace('\', '\\').Replace("'", "\'")
$replies = @()
try {
    for ($i = 0; $i -lt [int]$p.echoes; $i++) {
        $r = Get-WmiObject -Class Win32_PingStatus -Filter ("Address='" + $q + "' AND Timeout=" + [int]$p.timeout_ms)
        $replies += , @{status = $r.StatusCode; time = $r.ResponseTime; resolution = $r.PrimaryAddressResolutionStatus; address = $r.ProtocolAddress}
    }
} catch {
    # A broken WMI repository: ping.exe's text (its replies counted, never its exit code).
    $text = & ping.exe -n ([int]$p.echoes) -w ([int]$p.timeout_ms) $address | Out-String
    return @{target = $target; address = $address; source = 'ping.exe'; text = $text; gateway_from = $from}
}
@{target = $target; address = $address; source = 'Win32_PingStatus'; replies = $replies; gateway_from = $from}
