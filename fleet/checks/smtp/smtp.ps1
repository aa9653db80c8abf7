param($p)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Polite SMTP: wait (patiently) for the whole greeting before speaking, EHLO, QUIT;
# never DATA.  STARTTLS is noted as offered, not tried (tls_checked stays false).
# Each read has its timeout and the whole probe its deadline (greeting patience plus
# four timeouts): a server dripping a byte a second cannot hold it longer.
$ms = [int]$p.timeout_ms
$fleetEnd = [DateTime]::UtcNow.AddMilliseconds([int]$p.greet_ms + 4 * $ms)
function fleetLeft($ms) {
    $left = [int](($fleetEnd - [DateTime]::UtcNow).TotalMilliseconds)
    if ($left -lt $ms) { $ms = $left }
    if ($ms -lt 1) { throw (New-Object TimeoutException 'deadline') }
    $ms
}
function fleetReply($st, $ms, $lines) {
    # Bytes read as they come (ReadLine would wait for a line of any length), each read
    # bounded by what is left of $ms and of the deadline; the lines kept as they end.
    $until = [DateTime]::UtcNow.AddMilliseconds($ms)
    $buf = New-Object byte[] 1
    $line = New-Object Text.StringBuilder
    while ($lines.Count -lt 64) {
        $st.ReadTimeout = fleetLeft ([int](($until - [DateTime]::UtcNow).TotalMilliseconds))
        if ($st.Read($buf, 0, 1) -eq 0) { break }
        if ($buf[0] -ne 10) {
            if ($buf[0] -ne 13 -and $line.Length -lt 512) { [void]$line.Append([char]$buf[0]) }
            continue
        }
        $l = $line.ToString()
        [void]$line.Remove(0, $line.Length)
        [void]$lines.Add($l)
        if ($l -notmatch '^\d{3}-') { return }
    }
}
function fleetSocketError($e) {
    while ($e) {
        if ($e -is [Net.Sockets.SocketException]) { return [string]$e.SocketErrorCode }
        if ($e -is [TimeoutException]) { return 'TimedOut' }
        $e = $e.InnerException
    }
    ''
}
function fleetSend($st, $text) {
    $bytes = [Text.Encoding]::ASCII.GetBytes($text + "`r`n")
    $st.Write($bytes, 0, $bytes.Length)
}
$greet = New-Object Collections.ArrayList
$ehlo = New-Object Collections.ArrayList
$r = @{target = [string]$p.target; port = [int]$p.port; outcome = 'error'; starttls = $false; stage = 'connect'; tls_checked = $false}
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
try {
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $ar = $c.BeginConnect($ip[0], $r.port, $null, $null)
    if (-not $ar.AsyncWaitHandle.WaitOne((fleetLeft $ms))) { $r.outcome = 'timeout'; $r.error = 'no answer to connect'; return $r }
    $c.EndConnect($ar)
    $r.connect_ms = $sw.Elapsed.TotalMilliseconds
    $s = $c.GetStream()
    $s.WriteTimeout = $ms
    $r.stage = 'greeting'
    $sw = [Diagnostics.Stopwatch]::StartNew()
    fleetReply $s ([int]$p.greet_ms) $greet
    $r.greeting_ms = $sw.Elapsed.TotalMilliseconds
    if ($greet.Count -eq 0 -or $greet[$greet.Count - 1] -match '^\d{3}-') { $r.error = 'connection closed before the greeting'; return $r }
    if ($greet[0] -match '^(\d{3})') { $r.code = [int]$matches[1] }
    if ($r.code -ne 220) {
        $r.outcome = 'bad-greeting'
        try { fleetSend $s 'QUIT' } catch { }  # it may have hung up after its 421
        return $r
    }
    $r.stage = 'ehlo'
    fleetSend $s ('EHLO ' + ([string]$p.helo -replace '[\r\n ]', ''))
    fleetReply $s $ms $ehlo
    if ($ehlo.Count -eq 0 -or $ehlo[$ehlo.Count - 1] -notmatch '^250 ') { $r.error = 'EHLO refused'; return $r }
    foreach ($l in $ehlo) { if ($l -match '^250[ -]STARTTLS\s*$') { $r.starttls = $true } }
    $r.outcome = 'ok'
    $r.stage = 'quit'
    fleetSend $s 'QUIT'
    fleetReply $s $ms (New-Object Collections.ArrayList)
} catch {
    if ($r.outcome -ne 'ok') {
        $code = fleetSocketError $_.Exception
        if (-not $code) { $code = $_.Exception.GetBaseException().GetType().Name }
        $r.error = "$($r.stage) failed: $code"
        if ($code -eq 'ConnectionRefused') { $r.outcome = 'refused' }
        elseif ($code -eq 'TimedOut') { $r.outcome = 'timeout' }
        elseif ($code -eq 'HostUnreachable' -or $code -eq 'NetworkUnreachable') { $r.outcome = 'unreachable' }
    }
    # After a good EHLO the check has what it came for; a hang-up on QUIT is fine.
} finally {
    $c.Close()
    $r.greeting = @($greet)
    $r.ehlo = @($ehlo)
}
$r
