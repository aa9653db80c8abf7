"""The PowerShell scripts of the Windows steps (data, read by ``fleet.checks.windows``).

A package only so that the ``.ps1`` files ship with fleet; nothing here is Python code.
"""
