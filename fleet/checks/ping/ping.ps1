param($p)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Win32_PingStatus, one echo per query: ping.exe exits 0 even on "Destination host unreachable".
$target = [string]$p.target
$address = $target
if ($target -eq 'gateway') {
    $address = $null
    foreach ($c in @(Get-WmiObject Win32_NetworkAdapterConfiguration -Filter 'IPEnabled=TRUE')) {
        foreach ($g in @($c.DefaultIPGateway)) {
            if (-not $address -and $g -match '^\d+\.\d+\.\d+\.\d+$') { $address = $g }
        }
    }
    if (-not $address) { return @{target = $target; error = 'no default gateway'} }
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
    return @{target = $target; address = $address; source = 'ping.exe'; text = $text}
}
@{target = $target; address = $address; replies = $replies}
