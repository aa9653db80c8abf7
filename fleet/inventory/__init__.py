"""The Ansible-compatible inventory: which servers fleet audits, and their variables.

Reads what ops already keep for Ansible: INI or YAML inventory files, or a
directory of them, with ``group_vars/`` and ``host_vars/``; merges variables
by Ansible's precedence; selects hosts with Ansible's ``--limit`` patterns;
and prints what ``ansible-inventory --list`` prints.

    inventory = load_inventory("prod")          # inventories/prod, or ./prod
    for name in inventory.select("mail:!mx03*"):
        variables = inventory.host_vars(name)
"""

from fleet.inventory.loader import load_inventory, resolve_inventory_source
from fleet.inventory.model import MAGIC_VARS, Group, Host, Inventory
from fleet.inventory.vault import SecretText, VaultedValue, VaultError, VaultSecret, vault_secrets

__all__ = [
    "MAGIC_VARS",
    "Group",
    "Host",
    "Inventory",
    "SecretText",
    "VaultError",
    "VaultSecret",
    "VaultedValue",
    "load_inventory",
    "resolve_inventory_source",
    "vault_secrets",
]
