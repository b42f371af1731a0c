"""CLI: live meter reading (远程抄表) and remote trip/close (远程拉合闸) over DL/T 645-2007,
polling many meters, and the MQTT listener for AMI gateways."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import clock_from_env, database
from dianfei.core.errors import ValidationError

meters_app = typer.Typer(help="Live meters: DL/T 645 reads and trip/close, polling, MQTT (远程抄表与费控).",
                         no_args_is_help=True)

#: JSON keys of `meters read`, by register name
READ_KEYS = {"total": "forward_active_kwh", "sharp": "sharp_kwh", "peak": "peak_kwh", "flat": "flat_kwh",
             "valley": "valley_kwh", "reverse": "reverse_active_kwh"}


def register(app: typer.Typer) -> None:
    app.add_typer(meters_app, name="meters")


def _config(host: str | None, port: int | None, timeout: float | None, retries: int | None) -> Any:
    from dataclasses import replace

    from dianfei.core.settings import load_settings
    from dianfei.metering.dlt645.client import load_config, validate_config

    cfg = load_config(load_settings()).with_gateway(host, port)
    if timeout is not None:
        cfg = replace(cfg, timeout_s=timeout)
    if retries is not None:
        cfg = replace(cfg, retries=retries)
    validate_config(cfg)
    return cfg


def _protocol(protocol: str) -> None:
    if protocol.lower() not in ("dlt645", "dlt645-2007"):
        raise ValidationError(f"protocol {protocol!r} is not supported; use dlt645 (DL/T 645-2007)")


Host = Annotated[str | None, typer.Option(help="gateway / concentrator host (default: config)")]
Port = Annotated[int | None, typer.Option(help="gateway TCP port (default: config)")]
Timeout = Annotated[float | None, typer.Option(help="seconds per attempt (default 3)")]
Retries = Annotated[int | None, typer.Option(help="retries after a timeout or damaged reply (default 2)")]


@meters_app.command("read")
@handle_errors
def read(
    host: Host = None,
    port: Port = None,
    address: Annotated[str | None, typer.Option(
        help="12-digit meter address (通信地址); omitted: ask the line (0x13, one meter only)")] = None,
    protocol: Annotated[str, typer.Option(help="dlt645")] = "dlt645",
    timeout: Timeout = None,
    retries: Retries = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read one meter now: forward active total, the TOU registers and reverse active (kWh)."""
    from dianfei.core.clock import BUSINESS_TZ
    from dianfei.metering.dlt645.client import read_meter_sync
    from dianfei.metering.dlt645.frame import encode_address

    _protocol(protocol)
    if address is not None:
        encode_address(address)  # a clear error for a malformed address before any I/O
    cfg = _config(host, port, timeout, retries)
    reading = read_meter_sync(cfg, address, clock=clock_from_env())
    out: dict[str, Any] = {"address": reading.address, "protocol": "dlt645",
                           "read_at": reading.read_at.astimezone(BUSINESS_TZ).isoformat()}
    for name, value in reading.values.items():
        out[READ_KEYS[name]] = f"{value:.2f}"
    if reading.unavailable:
        out["unavailable"] = {READ_KEYS[k]: v for k, v in reading.unavailable.items()}
    if json_out:
        print_json(out)
    else:
        for key, value in out.items():
            typer.echo(f"{key}: {value}")


@meters_app.command("control")
@handle_errors
def control(
    action: Annotated[str, typer.Option(help="trip (跳闸) or close (合闸)")],
    host: Host = None,
    port: Port = None,
    address: Annotated[str, typer.Option(help="12-digit meter address (通信地址)")] = "",
    protocol: Annotated[str, typer.Option(help="dlt645")] = "dlt645",
    timeout: Timeout = None,
    retries: Retries = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Remote trip or close (control 0x1C); exit 0 only when the meter confirms (0x9C)."""
    from dianfei.metering.dlt645.client import control_sync
    from dianfei.metering.dlt645.frame import Dlt645Error, encode_address

    _protocol(protocol)
    if action not in ("trip", "close"):
        raise ValidationError(f"--action must be trip or close, got {action!r}")
    if not address:
        raise ValidationError("--address is required (the 12-digit meter address)")
    encode_address(address)
    cfg = _config(host, port, timeout, retries)
    try:
        reply = control_sync(cfg, address, action, clock=clock_from_env())
    except Dlt645Error as exc:
        if json_out:
            print_json({"address": address, "action": action, "ok": False, "error": exc.message,
                        "code": exc.code, "retryable": exc.retryable})
        raise
    out = {"address": address, "action": action, "ok": True, "reply": f"0x{reply.control:02X}",
           "relay": "tripped" if action == "trip" else "closed"}
    if json_out:
        print_json(out)
    else:
        typer.echo(f"meter {address}: {action} confirmed (0x{reply.control:02X})")


@meters_app.command("listen")
@handle_errors
def listen(
    mqtt: Annotated[str, typer.Option("--mqtt", help="broker URL, e.g. mqtt://127.0.0.1:1883")],
    topic: Annotated[list[str], typer.Option(help="topic filter (repeatable), e.g. ami/+/readings")],
    qos: Annotated[int, typer.Option(help="subscription QoS; 1 = at-least-once")] = 1,
    client_id: Annotated[str, typer.Option(
        help="stable client id: the broker keeps unacknowledged messages for it across restarts")]
        = "dianfei-ami-listener",
    batch_size: Annotated[int, typer.Option(help="readings per stored batch at most")] = 50_000,
    flush_ms: Annotated[int, typer.Option(help="store a batch at least this often (ms)")] = 200,
    max_inflight: Annotated[int, typer.Option(
        help="flush when this many messages await their ack (the broker's max_inflight_messages)")] = 20,
    max_messages: Annotated[int | None, typer.Option(help="stop after this many messages")] = None,
    idle_timeout: Annotated[float | None, typer.Option(
        help="stop after this many seconds without a message")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Subscribe to AMI gateway messages (JSON, schema dianfei.ami/1) and store them through the
    import path; acknowledges each message only after its batch is committed."""
    import sys

    from dianfei.metering.mqtt import ListenOptions
    from dianfei.metering.mqtt import listen as run_listener

    if batch_size < 1 or flush_ms < 1 or max_inflight < 1:
        raise ValidationError("--batch-size, --flush-ms and --max-inflight must be at least 1")
    options = ListenOptions(url=mqtt, topics=tuple(topic), qos=qos, client_id=client_id,
                            batch_readings=batch_size, flush_seconds=flush_ms / 1000,
                            max_inflight=max_inflight, max_messages=max_messages,
                            idle_timeout=idle_timeout, max_seconds=max_seconds)

    def ready() -> None:
        sys.stderr.write(f"subscribed to {', '.join(topic)} on {mqtt} as {client_id}\n")
        sys.stderr.flush()

    stats = run_listener(database(), options, clock=clock_from_env(), on_ready=ready)
    if json_out:
        print_json(stats.to_json())
    else:
        typer.echo(f"{stats.messages} messages: {stats.accepted} stored, {stats.duplicates} duplicates, "
                   f"{stats.rejected} rejected rows, {stats.rejected_messages} rejected messages, "
                   f"{stats.rejected_items} rejected items, {stats.unauthorised} refused (gateway "
                   f"may not report the meter), {stats.held} held as implausible")


@meters_app.command("poll")
@handle_errors
def poll(
    meter: Annotated[list[str] | None, typer.Option(
        help="meter id to poll (repeatable); default: every meter with a communication address")] = None,
    host: Host = None,
    port: Port = None,
    concurrency: Annotated[int, typer.Option(help="requests outstanding at once (connections)")] = 16,
    timeout: Timeout = None,
    retries: Retries = None,
    every: Annotated[float | None, typer.Option(help="poll again every this many seconds")] = None,
    rounds: Annotated[int | None, typer.Option(help="with --every: stop after this many rounds")] = None,
    check_clock: Annotated[bool, typer.Option(
        "--check-clock", help="also read each meter's clock (04000101/04000102) for `meters drift`")]
        = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read many meters over DL/T 645 and store the readings through the import path; every meter
    that could not be read is listed with its reason. Exit 0 even when some meters failed (the
    failures are the report); 2 on a configuration error."""
    import time

    from dianfei.metering.poll import poll as run_poll

    if every is not None and every <= 0:
        raise ValidationError("--every must be a positive number of seconds")
    cfg = _config(host, port, timeout, retries)
    db = database()
    done = 0
    while True:
        started = time.monotonic()
        result = run_poll(db, cfg, clock=clock_from_env(), meter_ids=list(meter) if meter else None,
                          concurrency=concurrency, check_clock=check_clock)
        done += 1
        if json_out:
            print_json(result.to_json())
        else:
            typer.echo(f"{result.meters} meters: {result.succeeded} read, {result.failed} failed; "
                       f"{result.accepted} reads stored, {result.duplicates} duplicates, "
                       f"{result.rejected} rejected ({result.elapsed_s:.2f} s)")
            for failure in result.failures:
                typer.echo(f"  {failure.meter_id} {failure.address or '-'}: {failure.reason}")
        if every is None or (rounds is not None and done >= rounds):
            break
        time.sleep(max(0.0, every - (time.monotonic() - started)))


# ---------------------------------------------------------------------------- routing and time

gateway_app = typer.Typer(help="Gateways and concentrators meters are reached through (采集通道).",
                          no_args_is_help=True)
meters_app.add_typer(gateway_app, name="gateway")


@gateway_app.command("add")
@handle_errors
def gateway_add(
    gateway: Annotated[str, typer.Option("--id", help="gateway id, e.g. CQ-01")],
    host: Annotated[str, typer.Option(help="gateway / concentrator host")],
    port: Annotated[int, typer.Option(help="gateway TCP port")],
    protocol: Annotated[str, typer.Option(help="dlt645")] = "dlt645",
    password: Annotated[str | None, typer.Option(
        help="DL/T 645 password of its meters, 8 hex digits (default: the configured one)")] = None,
    operator_code: Annotated[str | None, typer.Option(
        "--operator", help="DL/T 645 operator code, 8 hex digits (default: the configured one)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Put a gateway on file; the same gateway again is stored once, other settings are refused."""
    from dianfei.metering.gateways import Gateway, add_gateway

    gw = add_gateway(database(), clock_from_env(), Gateway(gateway, host, port, protocol.lower(),
                                                            password, operator_code))
    if json_out:
        print_json(gw.to_json())
    else:
        typer.echo(f"gateway {gw.gateway_id}: {gw.host}:{gw.port} ({gw.protocol})")


@gateway_app.command("list")
@handle_errors
def gateway_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The gateways on file (passwords are never shown, only whether one is set)."""
    from dianfei.metering.gateways import gateways

    out = [g.to_json() for g in gateways(database()).values()]
    if json_out:
        print_json(out)
    else:
        for g in out:
            typer.echo(f"{g['gateway']}: {g['host']}:{g['port']} ({g['protocol']})")


@gateway_app.command("assign")
@handle_errors
def gateway_assign(
    meter: Annotated[str, typer.Option(help="meter id")],
    gateway: Annotated[str, typer.Option(help="gateway id; `default` for the configured gateway")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Route a meter through a gateway."""
    from dianfei.metering.gateways import assign_gateway, gateway_label

    route = assign_gateway(database(), meter, gateway)
    out = {"meter_id": route.meter_id, "address": route.address,
           "gateway": gateway_label(route.gateway_id)}
    if json_out:
        print_json(out)
    else:
        typer.echo(f"meter {route.meter_id} → gateway {out['gateway']}")


@meters_app.command("timesync")
@handle_errors
def timesync(
    gateway: Annotated[str | None, typer.Option(
        help="one gateway id (`default`: the configured one); omitted: every gateway")] = None,
    timeout: Timeout = None,
    retries: Retries = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """DL/T 645-2007 broadcast time sync (广播校时, 0x08 to 99 99 99 99 99 99, ssmmhhDDMMYY in
    Beijing time) through each gateway. Meters never answer: exit 0 when every gateway took
    the frame, 1 when some could not be reached (listed), 2 on a configuration error."""
    from dianfei.metering.clocks import sync_time

    results = sync_time(database(), _config(None, None, timeout, retries), clock_from_env(),
                        gateway_id=gateway)
    failed = [r for r in results if not r.ok]
    if json_out:
        print_json({"gateways": [r.to_json() for r in results], "sent": len(results) - len(failed),
                    "failed": len(failed)})
    else:
        for r in results:
            typer.echo(f"{r.gateway} {r.host}:{r.port}: " + (f"sent {r.sent_time:%Y-%m-%d %H:%M:%S}"
                       if r.ok and r.sent_time else f"FAILED {r.error}"))
    if failed:
        raise typer.Exit(1)


@meters_app.command("drift")
@handle_errors
def drift(
    tolerance: Annotated[int | None, typer.Option(
        help="seconds (default: [metering.dlt645] clock_tolerance_s, 60)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Meters whose clock was, at their latest clock check (`meters poll --check-clock`), further
    from ours than the tolerance: drift = meter − receive time, seconds."""
    from dianfei.core.clock import BUSINESS_TZ
    from dianfei.metering.clocks import drift as find_drift

    limit = tolerance if tolerance is not None else _config(None, None, None, None).clock_tolerance_s
    rows = find_drift(database(), limit)
    found: list[dict[str, Any]] = [
        {"meter_id": r["meter_id"], "gateway": r["gateway"], "drift_s": r["drift_s"],
         "received_at": r["received_at"].astimezone(BUSINESS_TZ).isoformat(),
         "meter_time": r["meter_time"].astimezone(BUSINESS_TZ).isoformat()}
        for r in rows.iter_rows(named=True)]
    if json_out:
        print_json({"tolerance_s": limit, "meters": found})
    else:
        typer.echo(f"{len(found)} meters beyond {limit} s")
        for m in found:
            typer.echo(f"  {m['meter_id']} ({m['gateway']}): {m['drift_s']:+d} s at {m['received_at']}")
