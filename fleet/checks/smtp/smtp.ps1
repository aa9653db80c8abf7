param($p)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Polite SMTP: wait (greet_ms) for the whole greeting before speaking, EHLO, QUIT; never
# DATA.  STARTTLS is noted as offered, not tried (tls_checked stays false).
function fleetReply($rd) {
    # Bounded: a hostile server cannot make the report (or this process) grow.
    $lines = @()
    do {
        $l = $rd.ReadLine()
        if ($null -eq $l) { break }
        if ($l.Length -gt 512) { $l = $l.Substring(0, 512) }
        $lines += $l
    } while ($l -match '^\d{3}-' -and $lines.Count -lt 64)
    , $lines
}
function fleetSocketError($e) {
    while ($e) {
        if ($e -is [Net.Sockets.SocketException]) { return [string]$e.SocketErrorCode }
        $e = $e.InnerException
    }
    ''
}
$ms = [int]$p.timeout_ms
$r = @{target = [string]$p.target; port = [int]$p.port; outcome = 'error'; greeting = @(); ehlo = @(); starttls = $false}
try {
    # IPv4 first, as most mail relays are reached; IPv6 when that is all the name has.
    $all = @([Net.Dns]::GetHostAddresses($r.target))
    $ip = @($all | Where-Object { $_.AddressFamily -eq 'InterNetwork' }) + @($all | Where-Object { $_.AddressFamily -eq 'InterNetworkV6' })
} catch {
    $ip = @()
}
if ($ip.Count -eq 0) { $r.outcome = 'unresolved'; $r.error = 'name not resolved'; return $r }
$r.address = $ip[0].ToString()
$c = New-Object Net.Sockets.TcpClient($ip[0].AddressFamily)
$stage = 'connect'
try {
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $ar = $c.BeginConnect($ip[0], $r.port, $null, $null)
    if (-not $ar.AsyncWaitHandle.WaitOne($ms)) { $r.outcome = 'timeout'; $r.error = 'no answer to connect'; return $r }
    $c.EndConnect($ar)
    $r.connect_ms = $sw.Elapsed.TotalMilliseconds
    $s = $c.GetStream()
    $s.ReadTimeout = [int]$p.greet_ms
    $s.WriteTimeout = $ms
    $rd = New-Object IO.StreamReader($s, [Text.Encoding]::ASCII)
    $wr = New-Object IO.StreamWriter($s, [Text.Encoding]::ASCII)
    $wr.NewLine = "`r`n"
    $wr.AutoFlush = $true
    $stage = 'greeting'
    $r.greeting = fleetReply $rd
    $r.greeted_ms = $sw.Elapsed.TotalMilliseconds
    $s.ReadTimeout = $ms
    if ($r.greeting.Count -eq 0) { $r.error = 'connection closed before the greeting'; return $r }
    if ($r.greeting[0] -match '^(\d{3})') { $r.code = [int]$matches[1] }
    if ($r.code -ne 220) { $r.outcome = 'bad-greeting'; return $r }
    $stage = 'ehlo'
    $wr.WriteLine('EHLO ' + ([string]$p.helo -replace '[\r\n]', ''))
    $r.ehlo = fleetReply $rd
    if ($r.ehlo.Count -eq 0 -or $r.ehlo[-1] -notmatch '^250 ') { $r.error = 'EHLO refused'; return $r }
    $r.starttls = [bool]($r.ehlo -match '^250[ -]STARTTLS')
    $stage = 'quit'
    $wr.WriteLine('QUIT')
    [void](fleetReply $rd)
    $r.outcome = 'ok'
} catch {
    if ($stage -eq 'quit') {
        # The server hung up on QUIT: the audit already has what it came for.
        $r.outcome = 'ok'
    } else {
        $code = fleetSocketError $_.Exception
        if (-not $code) { $code = $_.Exception.GetBaseException().GetType().Name }
        $r.error = "$stage failed: $code"
        if ($code -eq 'ConnectionRefused') { $r.outcome = 'refused' }
        elseif ($code -eq 'TimedOut') { $r.outcome = 'timeout' }
        elseif ($code -eq 'HostUnreachable' -or $code -eq 'NetworkUnreachable') { $r.outcome = 'unreachable' }
    }
} finally {
    $c.Close()
}
$r
