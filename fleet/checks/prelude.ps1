# fleet: the frame around every step.  Runs on Windows PowerShell 2.0 (Server 2008 R2) and later.
# Each step runs in its own runspace of one pool, side by side, so one stuck WMI call costs
# only its own section; each section is printed in step order as base64 of UTF-8 JSON, because
# the WinRM shell's code page 437 would garble anything else.

function fleetQ([string]$s) {
    $b = New-Object System.Text.StringBuilder
    [void]$b.Append('"')
    foreach ($c in $s.ToCharArray()) {
        $n = [int]$c
        if ($n -eq 34) { [void]$b.Append('\"') }
        elseif ($n -eq 92) { [void]$b.Append('\\') }
        elseif ($n -lt 32) { [void]$b.Append('\u' + $n.ToString('x4')) }
        else { [void]$b.Append($c) }
    }
    [void]$b.Append('"')
    $b.ToString()
}

# A JSON writer for PowerShell 2.0, which has no ConvertTo-Json.
function fleetJ($o, [int]$d) {
    if ($null -eq $o) { return 'null' }
    if ($o -is [bool]) { if ($o) { return 'true' } else { return 'false' } }
    if ($o -is [string] -or $o -is [char] -or $o -is [guid]) { return fleetQ ([string]$o) }
    if ($o -is [datetime]) { return fleetQ ($o.ToString('o')) }
    if ($o -is [enum]) { return [string][long]$o }
    if ($o -is [ValueType]) { return [string]::Format([Globalization.CultureInfo]::InvariantCulture, '{0}', $o) }
    if ($d -ge 4) { return fleetQ ([string]$o) }
    if ($o -is [Collections.IDictionary]) {
        $m = @(foreach ($k in $o.Keys) { (fleetQ ([string]$k)) + ':' + (fleetJ $o[$k] ($d + 1)) })
        return '{' + ($m -join ',') + '}'
    }
    if ($o -is [Collections.IEnumerable]) {
        $m = @(foreach ($x in $o) { fleetJ $x ($d + 1) })
        return '[' + ($m -join ',') + ']'
    }
    $m = @(foreach ($p in $o.PSObject.Properties) { (fleetQ $p.Name) + ':' + (fleetJ $p.Value ($d + 1)) })
    '{' + ($m -join ',') + '}'
}

function fleetJson($o) {
    if (Get-Command ConvertTo-Json -ErrorAction SilentlyContinue) {
        return ConvertTo-Json -InputObject $o -Depth 4 -Compress
    }
    fleetJ $o 0
}

function fleetSection([string]$nonce, [int]$i, [int]$rc, [string]$json) {
    $b64 = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($json))
    [Console]::Out.Write("`n@@fleet $nonce begin $i`n$b64`n@@fleet $nonce end $i $rc 0 b64`n")
}

function fleetArg([string]$b64) {
    [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($b64))
}

function fleetRun($code, $steps, [string]$nonce, [int]$ms) {
    $pool = [Management.Automation.Runspaces.RunspaceFactory]::CreateRunspacePool(1, [Math]::Max(1, $steps.Count))
    $pool.Open()
    $jobs = @(foreach ($s in $steps) {
        $ps = [Management.Automation.PowerShell]::Create()
        $ps.RunspacePool = $pool
        [void]$ps.AddScript($code[$s[0]]).AddArgument($s[1])
        , @($ps, $ps.BeginInvoke())
    })
    $deadline = [DateTime]::UtcNow.AddMilliseconds($ms)
    for ($i = 0; $i -lt $jobs.Count; $i++) {
        $ps = $jobs[$i][0]
        $h = $jobs[$i][1]
        $left = [int][Math]::Max(0, ($deadline - [DateTime]::UtcNow).TotalMilliseconds)
        if ($h.AsyncWaitHandle.WaitOne($left)) {
            try {
                $r = $ps.EndInvoke($h)
                $json = fleetJson $r[0]
                $rc = 0
            } catch {
                $e = $_.Exception
                if ($e.InnerException) { $e = $e.InnerException }
                $json = fleetJson @{error = $e.Message}
                $rc = 1
            }
        } else {
            # Stop without waiting: a hung WMI provider must not hold up the other sections.
            [void]$ps.BeginStop($null, $null)
            $json = fleetJson @{error = "step did not finish within $($ms / 1000) s"}
            $rc = 124
        }
        fleetSection $nonce $i $rc $json
    }
    [Console]::Out.Flush()
}
