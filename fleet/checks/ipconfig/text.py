"""The text of ``ipconfig /all``: the last resort when WMI is broken (ipconfig.ps1).

ipconfig speaks the language of the host.  Its structure does not change: an
adapter header at the left margin ending in ``:``, then indented ``label . . . :
value`` lines, continuation lines for more gateways and DNS servers.  The labels
are read from a table per language; a block is judged by structure as well, and
refused (ParseError, cause ``unparsed``) rather than guessed when a label that is
not in the table carries an IPv4 address, when an address has no mask, or when a
mask is no mask.  ipconfig shows "Media State" only for a disconnected adapter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fleet.checks import winjson
from fleet.checks.facts import Address, Interface, NetConfig
from fleet.checks.net.windows import netconfig, prefix, unique
from fleet.errors import ParseError
from fleet.truth import parse_bool

# Labels per field, as Windows prints them (en, de, fr, es, it, pt-BR/pt-PT, ru, ja, zh-CN/zh-TW).
_LABELS: dict[str, tuple[str, ...]] = {
    "ipv4": (
        "IPv4 Address",
        "IP Address",
        "Autoconfiguration IPv4 Address",
        "Autoconfiguration IP Address",
        "IPv4-Adresse",
        "IP-Adresse",
        "Autokonfiguration IPv4-Adresse",
        "Autokonfigurations-IPv4-Adresse",
        "Adresse IPv4",
        "Adresse IP",
        "Adresse IPv4 de configuration automatique",
        "Dirección IPv4",
        "Dirección IP",
        "Dirección IPv4 de configuración automática",
        "Indirizzo IPv4",
        "Indirizzo IP",
        "Indirizzo IPv4 autoconfigurazione",
        "Endereço IPv4",
        "Endereço IP",
        "Endereço IP de config. automática",
        "Endereço IPv4 de configuração automática",
        "IPv4-адрес",
        "IP-адрес",
        "Автонастройка IPv4-адреса",
        "IPv4 アドレス",
        "IP アドレス",
        "自動構成 IPv4 アドレス",
        "IPv4 地址",
        "IP 地址",
        "自动配置 IPv4 地址",
        "IPv4 位址",
        "自動設定 IPv4 位址",
    ),
    "mask": (
        "Subnet Mask",
        "Subnetzmaske",
        "Masque de sous-réseau",
        "Máscara de subred",
        "Subnet mask",
        "Máscara de Sub-rede",
        "Máscara de sub-rede",
        "Маска подсети",
        "サブネット マスク",
        "子网掩码",
        "子網路遮罩",
    ),
    "gateway": (
        "Default Gateway",
        "Standardgateway",
        "Passerelle par défaut",
        "Puerta de enlace predeterminada",
        "Gateway predefinito",
        "Gateway Padrão",
        "Gateway predefinido",
        "Основной шлюз",
        "デフォルト ゲートウェイ",
        "默认网关",
        "預設閘道",
    ),
    "dhcp": (
        "DHCP Enabled",
        "DHCP aktiviert",
        "DHCP activé",
        "DHCP habilitado",
        "DHCP abilitato",
        "DHCP Habilitado",
        "DHCP ativado",
        "DHCP включен",
        "DHCP 有効",
        "DHCP 已启用",
        "DHCP 已啟用",
    ),
    "dns": (
        "DNS Servers",
        "DNS-Server",
        "Serveurs DNS",
        "Servidores DNS",
        "Server DNS",
        "DNS-серверы",
        "DNS サーバー",
        "DNS 服务器",
        "DNS 伺服器",
    ),
    "description": (
        "Description",
        "Beschreibung",
        "Descripción",
        "Descrizione",
        "Descrição",
        "Описание",
        "説明",
        "描述",
    ),
    "mac": (
        "Physical Address",
        "Physische Adresse",
        "Adresse physique",
        "Dirección física",
        "Indirizzo fisico",
        "Endereço Físico",
        "Endereço físico",
        "Физический адрес",
        "物理アドレス",
        "物理地址",
        "實體位址",
    ),
    "media": (
        "Media State",
        "Medienstatus",
        "Statut du média",
        "Estado de los medios",
        "Stato supporto",
        "Estado da mídia",
        "Estado do suporte",
        "Состояние среды",
        "メディアの状態",
        "媒体状态",
        "媒體狀態",
    ),
    # Known, and not needed: the labels that carry an IPv4 address all the same.
    "other": (
        "DHCP Server",
        "DHCP-Server",
        "Serveur DHCP",
        "Servidor DHCP",
        "Server DHCP",
        "DHCP-сервер",
        "DHCP サーバー",
        "DHCP 服务器",
        "DHCP 伺服器",
        "Primary WINS Server",
        "Secondary WINS Server",
        "Primärer WINS-Server",
        "Sekundärer WINS-Server",
        "Serveur WINS principal",
        "Serveur WINS secondaire",
    ),
}
_YES_NO = {
    "ja": True,
    "nein": False,
    "oui": True,
    "non": False,
    "sí": True,
    "si": True,
    "sì": True,
    "sim": True,
}
_YES_NO |= {"não": False, "да": True, "нет": False, "はい": True, "いいえ": False}
_YES_NO |= {"是": True, "否": False}

# "Ethernet adapter ", "Carte Ethernet ": what comes before the adapter's name.
_KINDS = (
    "Ethernet adapter ",
    "Wireless LAN adapter ",
    "Tunnel adapter ",
    "PPP adapter ",
    "Unknown adapter ",
    "Ethernet-Adapter ",
    "Drahtlos-LAN-Adapter ",
    "Tunneladapter ",
    "PPP-Adapter ",
    "Unbekannter Adapter ",
    "Carte Ethernet ",
    "Carte réseau sans fil ",
    "Carte Tunnel ",
    "Carte PPP ",
    "Carte inconnue ",
    "Adaptador de Ethernet ",
    "Adaptador de LAN inalámbrica ",
    "Adaptador de túnel ",
    "Adaptador desconocido ",
    "Scheda Ethernet ",
    "Scheda LAN wireless ",
    "Scheda Tunnel ",
    "Scheda PPP ",
    "Scheda sconosciuta ",
    "Adaptador Ethernet ",
    "Adaptador de Rede sem Fio ",
    "Adaptador de Túnel ",
    "Adaptador PPP ",
    "Adaptador desconhecido ",
    "Адаптер Ethernet ",
    "Адаптер беспроводной локальной сети ",
    "Адаптер туннельного подключения ",
    "Адаптер PPP ",
    "Неизвестный адаптер ",
    "イーサネット アダプター ",
    "PPP アダプター ",
    "トンネル アダプター ",
    "不明なアダプター ",
    "以太网适配器 ",
    "无线局域网适配器 ",
    "隧道适配器 ",
    "PPP 适配器 ",
    "未知适配器 ",
)
_NON_LATIN = re.compile(r"[\u0400-\u04ff\u3000-\u9fff\uff00-\uffef]")
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_HEADER = re.compile(r"^(?P<header>\S.*?)\s*:\s*$")
# "   Label . . . . : value": the colon after the dot leaders, else the first colon.
_DOTTED = re.compile(r"^(?P<label>\s+\S.*?)(?:\s*\.)+[\s\u00a0\u00ff]*:(?:\s(?P<value>.*))?$")
_PLAIN = re.compile(r"^(?P<label>\s+\S[^:]*?)[\s\u00a0\u00ff]*:(?:\s(?P<value>.*))?$")


def _full_key(label: str) -> str:
    return re.sub(r"[\W_]", "", label.casefold())


def _ascii_key(label: str) -> str:
    # Letters outside ASCII dropped: "réseau" and its cp850-through-cp1252 mojibake agree.
    return re.sub(r"[^a-z0-9]", "", label.casefold())


_BY_FULL = {_full_key(lbl): f for f, labels in _LABELS.items() for lbl in labels}
_BY_ASCII = {
    _ascii_key(lbl): f
    for f, labels in _LABELS.items()
    for lbl in labels
    if not _NON_LATIN.search(lbl)
}


def _field(label: str) -> str | None:
    """The field a label names, or None when it is not in the table."""
    if _NON_LATIN.search(label):
        return _BY_FULL.get(_full_key(label))
    return _BY_FULL.get(_full_key(label)) or _BY_ASCII.get(_ascii_key(label))


@dataclass
class _Block:
    header: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (label, value)


def _split(line: str) -> tuple[str, str] | None:
    match = _DOTTED.match(line) or _PLAIN.match(line)
    if not match:
        return None
    return match.group("label").strip(), (match.group("value") or "").strip()


def _blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    current: str | None = None  # the field continuation lines add to
    for line in text.splitlines():
        if not line.strip():
            continue
        header = _HEADER.match(line)
        if header:
            blocks.append(_Block(header.group("header")))
            current = None
            continue
        if not blocks or not line[0].isspace():
            continue  # the host-wide part before the first adapter, a prompt, a wrapped tail
        parts = _split(line)
        if parts is None:
            if current is not None:  # a continuation: one more gateway or DNS server
                blocks[-1].fields.setdefault(current, []).append(line.strip())
            elif _IPV4.match(_strip_status(line)):
                blocks[-1].unknown.append(("", line.strip()))
            continue
        label, value = parts
        name = _field(label)
        current = name or f"?{label}"
        if name is None:
            blocks[-1].unknown.append((label, value))
        elif value:
            blocks[-1].fields.setdefault(name, []).append(value)
    return blocks


def _strip_status(value: str) -> str:
    return value.split("(")[0].strip()  # "10.0.0.5(Preferred)", "(Bevorzugt)", "(首选)"


def _ipv4s(values: list[str]) -> list[str]:
    return [v for v in map(_strip_status, values) if _IPV4.match(v)]


def _refuse_unknown(block: _Block) -> None:
    for label, value in block.unknown:
        if _IPV4.match(_strip_status(value)):
            raise ParseError(
                f"unparsed ipconfig label {label!r} with the address {value!r}"
                f" on adapter {block.header!r}"
            )


def _dhcp(values: list[str]) -> bool | None:
    if not values:
        return None
    word = values[0].strip().casefold()
    known = parse_bool(word)
    return known if known is not None else _YES_NO.get(word)


def _name(header: str) -> str:
    return next((header[len(k) :] for k in _KINDS if header.startswith(k)), header)


def _interface(block: _Block) -> Interface:
    _refuse_unknown(block)
    fields = block.fields
    addresses = _ipv4s(fields.get("ipv4", []))
    masks = [_strip_status(m) for m in fields.get("mask", [])]
    if len(masks) < len(addresses):
        raise ParseError(f"unparsed ipconfig: an address without a mask on {block.header!r}")
    lengths = [prefix(m) if _IPV4.match(m) else None for m in masks]
    if any(length is None for length in lengths):
        raise ParseError(f"unparsed ipconfig: mask {masks!r} on {block.header!r}")
    dhcp = _dhcp(fields.get("dhcp", []))
    return Interface(
        name=_name(block.header),
        up="media" not in fields,  # ipconfig shows the media state only when disconnected
        ipv4=tuple(
            Address(address=a, prefix=length or 0, dynamic=dhcp)
            for a, length in zip(addresses, lengths, strict=False)
        ),
        dhcp=dhcp,
        gateways=unique(_ipv4s(fields.get("gateway", []))),
        dns=unique(winjson.ipv4s(fields.get("dns", []))),
        mac=fields.get("mac", [""])[0],
        description=fields.get("description", [""])[0],
    )


def parse_ipconfig_text(text: str) -> NetConfig:
    """``ipconfig /all`` text in any of the languages above (or ParseError, unparsed)."""
    blocks = [b for b in _blocks(text) if b.fields or b.unknown]
    if not blocks:
        raise ParseError("no adapter found in the ipconfig output")
    return netconfig([_interface(b) for b in blocks], "ipconfig /all")
