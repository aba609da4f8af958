"""``conn``: the command people run. Each command imports its implementation lazily."""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from conn.cli.profiles_cmd import profiles_app
from conn.cli.rejected_cmd import rejected, retry
from conn.cli.triggers_cmd import triggers_command

app = typer.Typer(
    name="conn",
    help=(
        "Move customer data from warehouses, databases, files and Singer taps into CRMs, "
        "messaging tools, ad audiences and webhooks: consent-gated, incremental, lossless.\n\n"
        "Start with 'conn init --demo DIR', then 'conn sync SOURCE DEST' inside DIR."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)
singer_app = typer.Typer(help="Use conn connectors from Singer and Meltano.", no_args_is_help=True)
new_app = typer.Typer(help="Create new things: plugins.", no_args_is_help=True)
experiments_app = typer.Typer(
    help="Holdout experiments: who was held out of a sync's destination, and whether the "
    "treatment changed an outcome (docs/experiments.md).", no_args_is_help=True)
app.add_typer(singer_app, name="singer")
app.add_typer(new_app, name="new")
alerts_app = typer.Typer(help="Alert rules of conn.yml: list them with their last state, "
                         "send a test notice.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(experiments_app, name="experiments")
app.add_typer(profiles_app, name="profiles")
app.command("triggers")(triggers_command)

ProjectOpt = Annotated[
    Optional[Path],  # noqa: UP045 - typer needs Optional here
    typer.Option("--project", "-p", help="conn.yml or its folder (default: search upwards "
                 "from the current folder; env CONN_PROJECT)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object for machines "
                    "(errors too: {\"ok\": false, \"error\": {...}}).")]


def _print_version(value: bool) -> None:
    if value:
        import conn

        sys.stdout.write(f"conn {conn.__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                       help="Print conn's version and exit.")] = False,
) -> None:
    """Options that come before the command."""


@app.command()
def sync(
    source: Annotated[str, typer.Argument(help="Source name from conn.yml.")],
    destination: Annotated[str, typer.Argument(help="Destination name from conn.yml.")],
    sync_name: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--sync", "-s", help="Run only this sync (repeatable). Default: every sync "
        "from SOURCE to DEST.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan and show the requests "
                       "that would be sent (secrets redacted); send and store nothing.")] = False,
    full_resync: Annotated[bool, typer.Option("--full-resync", help="Re-send every row; "
                           "still deletes what left the set in mirror mode.")] = False,
    preview: Annotated[int, typer.Option("--preview", help="With --dry-run: how many "
                       "records to show.")] = 5,
    batch_rows: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--batch-rows", help="Rows per source batch.")] = None,
    new_target: Annotated[bool, typer.Option(
        "--new-target", help="The sync now writes to another place (destination, object, "
        "match key, stream or query changed on purpose): start it from scratch, sending "
        "every row; the old target keeps what it has.")] = False,
    same_target: Annotated[bool, typer.Option(
        "--same-target", help="The change names the same place (a renamed view or "
        "destination): keep the state and record the new names.")] = False,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Stream: follow the source's changes and deliver them in "
        "micro-batches until Ctrl-C or SIGTERM (one sync; its source must offer a change "
        "stream, e.g. postgres with replication). See docs/realtime.md.")] = False,
    new_experiment: Annotated[bool, typer.Option(
        "--new-experiment", help="A sync's holdout percent or salt changed on purpose: "
        "archive the old experiment (its members are kept as NAME#N) and start a new one. "
        "See docs/experiments.md.")] = False,
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run every sync declared from SOURCE to DEST (with --follow: one sync, continuously).

    Exit codes: 0 all rows delivered; 4 finished but some rows rejected (see 'conn
    rejected'); 1 a sync failed (unacknowledged rows stay pending for the next run);
    3 configuration error (also: the sync's target changed, see --new-target; a
    holdout's design changed, see --new-experiment);
    5 another run holds the sync's lock; 6 plugin missing/broken.
    """
    from conn.cli.sync_cmd import run_sync

    if new_target and same_target:
        raise typer.BadParameter("--new-target and --same-target contradict each other")
    run_sync(source, destination, sync_name or [], dry_run=dry_run, full_resync=full_resync,
             preview=preview, batch_rows=batch_rows, project=project, json_out=json_out,
             on_target_change="new" if new_target else "same" if same_target else None,
             follow=follow, new_experiment=new_experiment)


@app.command()
def preview(
    sync_name: Annotated[str, typer.Argument(help="Sync name from conn.yml.")],
    rows: Annotated[int, typer.Option("--rows", "-n", help="How many records.")] = 10,
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the first records of a sync exactly as the destination would receive them,
    after consent and field policies, without sending anything."""
    from conn.cli.sync_cmd import run_preview

    run_preview(sync_name, rows=rows, project=project, json_out=json_out)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address /healthz and /metrics "
                    "listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port of /healthz and /metrics; 0 "
                    "picks a free one (printed in the 'serving' line).")] = 8710,
    drain_seconds: Annotated[float, typer.Option(
        "--drain-seconds", help="On SIGTERM/SIGINT, how long runs in flight may take to "
        "stop before the process exits anyway (exit 130).")] = 10.0,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Also serve the web UI "
                  "(conn ui) on the same port.")] = True,
    ui_token: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--ui-token", envvar="CONN_UI_TOKEN", help="Token the UI's API requires; needed "
        "for the UI when --host is not loopback.")] = None,
    project: ProjectOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per event "
                        "line, for machines.")] = False,
) -> None:
    """Run the project's syncs on their schedules until stopped: one long-running process.

    Each sync with a 'schedule:' in conn.yml ({every: 15m}, or {cron: '0 * * * *',
    timezone: Europe/Paris}) runs when due, in its own worker: a slow or failing
    destination holds up only its own sync; a sync still running when due again is
    skipped (counted); a failed run is retried at the next due time. Syncs without a
    schedule are not run (listed at start). GET /healthz (JSON; 503 if the scheduler
    died or while draining) and /metrics (Prometheus) on --host:--port, and the web UI
    (docs/ui.md) at / unless --no-ui. Paused syncs (conn pause) are skipped.

    SIGTERM or SIGINT drains: nothing new starts, runs in flight stop as Ctrl-C stops
    'conn sync' (acknowledged rows committed, the rest re-sent by the next run). Exit
    codes: 0 drained; 130 runs still busy after --drain-seconds, or a second signal;
    5 another conn serve runs this project (its pid is named); 3 configuration error.
    See docs/realtime.md.
    """
    from conn.cli.serve_cmd import run_serve

    run_serve(project=project, host=host, port=port, drain_seconds=drain_seconds,
              json_out=json_out, ui=ui, ui_token=ui_token)


@app.command()
def check(
    project: ProjectOpt = None,
    connect: Annotated[bool, typer.Option(help="Also test connections with each "
                       "plugin's check().")] = True,
    offline: Annotated[bool, typer.Option("--offline", "--config-only", help="Validate the "
                       "configuration only (conn.yml and each plugin's config): open, "
                       "read and send nothing, no network.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Validate conn.yml (every problem at once, with its path), test connections and
    validate every sync's mapping against its destination object."""
    from conn.cli.project_cmds import check_project

    check_project(project, connect=connect, json_out=json_out, offline=offline)


@app.command()
def discover(
    source: Annotated[str, typer.Argument(help="Source name from conn.yml.")],
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List a source's streams with their columns, types and primary key."""
    from conn.cli.project_cmds import discover_source

    discover_source(source, project=project, json_out=json_out)


@app.command()
def plugins(json_out: JsonOpt = False) -> None:
    """List installed plugins: name, kind, version, distribution, hooks, errors."""
    from conn.cli.project_cmds import list_plugins

    list_plugins(json_out=json_out)


@app.command()
def runs(
    sync_name: Annotated[Optional[str], typer.Argument(help="Only this sync.")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List past runs with their counts, duration and status."""
    from conn.cli.project_cmds import list_runs

    list_runs(sync_name, limit=limit, project=project, json_out=json_out)


app.command()(rejected)
app.command()(retry)


@app.command()
def pause(
    sync_names: Annotated[list[str], typer.Argument(help="Sync name(s) from conn.yml.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown by conn ui and "
                      "in the skipped runs' reports).")] = "",
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Pause syncs: 'conn sync', 'conn serve' and 'conn ui' skip them (status 'paused',
    exit 0; nothing read or sent) until 'conn resume'. A dry run still previews them.
    Kept in the project's .conn/paused.json."""
    from conn.cli.pause_cmd import pause_command

    pause_command(sync_names, reason=reason, resume=False, project=project,
                  json_out=json_out)


@app.command()
def resume(
    sync_names: Annotated[list[str], typer.Argument(help="Sync name(s) from conn.yml.")],
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Resume paused syncs: the next 'conn sync' or scheduled run runs them again."""
    from conn.cli.pause_cmd import pause_command

    pause_command(sync_names, reason="", resume=True, project=project, json_out=json_out)


@app.command()
def ui(
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything "
                    "but loopback needs --token (or CONN_UI_TOKEN).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port; 0 picks a free one (printed)."
                    )] = 8711,
    token: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--token", envvar="CONN_UI_TOKEN", help="Require this bearer token on every API "
        "request (open the printed URL, which carries it after '#').")] = None,
    project: ProjectOpt = None,
) -> None:
    """Serve the web UI and its JSON API (/api, described at /api/openapi.json) until
    Ctrl-C: syncs, runs, rejected rows, previews and people; run, pause and resume
    syncs. See docs/ui.md."""
    from conn.cli.ui_cmd import run_ui

    run_ui(project=project, host=host, port=port, token=token)


@app.command()
def explain(
    subject: Annotated[str, typer.Argument(help="A subject key (e.g. a customer id).")],
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Which syncs would send this person's data, to which destinations, which fields
    (after policies), and which consent record or legal basis allows or blocks each."""
    from conn.cli.explain import explain_command

    explain_command(subject, project, json_out)


@app.command()
def forget(
    subjects: Annotated[Optional[list[str]], typer.Argument(  # noqa: UP045
        help="The person: any identifier (primary key, e-mail or other match value, "
        "consent subject); several for one person.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the destinations, "
                       "objects, operation and record counts; change and send "
                       "nothing.")] = False,
    status: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--status", metavar="SUBJECT|RECEIPT_ID", help="Show a person's (or one) "
        "erasure receipt and check the receipt chain.")] = None,
    retry: Annotated[bool, typer.Option("--retry", help="Send every pending erasure "
                     "now.")] = False,
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Erase a person (GDPR Art. 17) from every destination conn delivered them to, keep
    them out of every later sync (hashed suppression list) and remove them from conn's
    own state; prints the hash-chained receipt.

    Exit codes: 0 done; 1 erasures left pending (retried by the next sync and by
    --retry); 4 a destination has no erasure or delete (remove by hand); 3 configuration
    error; 5 a sync holding the person is running; 8 state unreadable or (--status)
    the receipt chain was tampered with.
    """
    from conn.cli.forget_cmd import forget_command

    forget_command(subjects or [], dry_run=dry_run, status=status, retry=retry,
                   project=project, json_out=json_out)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new project.")] = Path("."),
    demo: Annotated[bool, typer.Option("--demo", help="Create a DuckDB warehouse with "
                    "synthetic customers, events and consent records, and syncs.")] = False,
    customers: Annotated[int, typer.Option(help="Demo size.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Demo random seed.")] = 42,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing project.")]
    = False,
) -> None:
    """Create a new project (conn.yml); --demo adds a warehouse and syncs ready to run."""
    from conn.cli.init_cmd import init_project

    init_project(directory, demo=demo, customers=customers, seed=seed, force=force)


@experiments_app.command("list")
def experiments_list(project: ProjectOpt = None, json_out: JsonOpt = False) -> None:
    """List holdout experiments, running and archived, with their members per arm.

    Exit codes: 0 listed (also when there are none); 3 configuration error."""
    from conn.cli.experiments_cmd import list_command

    list_command(project=project, json_out=json_out)


@experiments_app.command("report")
def experiments_report(
    name: Annotated[str, typer.Argument(help="Experiment name (see 'conn experiments "
                        "list'; by default a sync's name).")],
    outcome: Annotated[str, typer.Option(
        "--outcome", "-o", help="Where the outcome is: a stream of the source (e.g. "
        "orders) or a query (e.g. \"SELECT customer_id FROM orders WHERE amount > 0\"). "
        "A member converted if its key appears in it.")],
    source: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--source", help="Source to read the outcome from (default: the experiment's "
        "sync's source).")] = None,
    key: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--key", "-k", help="Outcome column(s) holding the member key, in the order of the "
        "sync's primary key (repeatable; default: the sync's primary key columns).")] = None,
    alpha: Annotated[float, typer.Option(
        "--alpha", min=0.0001, max=0.5, help="Significance level; intervals are at "
        "1 - alpha.")] = 0.05,
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare the outcome rate of the treatment arm with the holdout arm: absolute and
    relative uplift with confidence intervals and a p-value (two-proportion z-test;
    Fisher's exact test when an expected count is below 5).

    Exit codes: 0 report printed (significant or not: read 'significant' in --json);
    2 usage error; 3 unknown experiment, source or outcome column; 6 plugin missing."""
    from conn.cli.experiments_cmd import report_command

    report_command(name, outcome, source=source, key=key or [], alpha=alpha,
                   project=project, json_out=json_out)


@new_app.command("plugin")
def new_plugin(
    name: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--name", help="Plugin name, e.g. 'Acme CRM' (type acme_crm, package "
        "conn-destination-acme-crm).")] = None,
    kind: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--kind", help="source or destination.")] = None,
    destination_style: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--destination-style", help="For destinations: http or database_or_file.")] = None,
    auth: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--auth", help="For HTTP destinations: none, bearer, basic or oauth2.")] = None,
    author: Annotated[Optional[str], typer.Option("--author", help="Author name.")]  # noqa: UP045
    = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where to create "
                          "the package folder.")] = Path("."),
    no_input: Annotated[bool, typer.Option("--no-input", help="Ask nothing: use the "
                        "options given and the template's defaults.")] = False,
    conn_from: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--conn-source", help="Where the package gets conn: a version (>=0.1), a conn "
        "checkout or wheel, or a VCS URL (default: this conn's checkout when it runs from "
        "one).")] = None,
) -> None:
    """Create a plugin package (source or destination) with tests, CI and docs, from
    conn's cookiecutter template. Needs: pip install 'conn[new]'."""
    from conn.cli.new_cmd import run_new_plugin

    run_new_plugin(name=name, kind=kind, destination_style=destination_style, auth=auth,
                   author=author, output_dir=output_dir, no_input=no_input,
                   conn_from=conn_from)


ConfigFileOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--config", "-c", help="Singer config JSON: with --type, the plugin's "
                 "config; with a conn.yml, merged over the declared config."),
]
TypeOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--type", "-t", help="Plugin type to run without a conn.yml (e.g. duckdb, "
                 "files); its config is the --config file."),
]
AboutOpt = Annotated[bool, typer.Option("--about", help="Describe the connector "
                     "(name, version, capabilities, settings) and exit.")]
FormatOpt = Annotated[str, typer.Option("--format", help="--about output: json or "
                      "markdown.")]


@singer_app.command("tap")
def singer_tap(
    source: Annotated[Optional[str], typer.Argument(  # noqa: UP045
        help="Source name from conn.yml (omit with --type).")] = None,
    type_name: TypeOpt = None,
    config: ConfigFileOpt = None,
    catalog: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--catalog", "--properties", help="Singer catalog: the selected streams (and "
        "fields) are synced; default every stream.")] = None,
    state: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--state", "-s", help="Singer state (bookmarks) from a previous run.")] = None,
    discover: Annotated[bool, typer.Option("--discover", "-d", help="Print the catalog "
                        "and exit.")] = False,
    about: AboutOpt = False,
    fmt: FormatOpt = "json",
    batch_rows: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--batch-rows", help="Rows per source batch.")] = None,
    project: ProjectOpt = None,
) -> None:
    """Run a conn source as a Singer tap: SCHEMA, RECORD and STATE messages on stdout."""
    from conn.cli.singer_cmd import run_tap

    run_tap(source, type_name=type_name, config_file=config, catalog_file=catalog,
            state_file=state, discover=discover, about_=about, fmt=fmt, project=project,
            batch_rows=batch_rows)


@singer_app.command("target")
def singer_target(
    destination: Annotated[Optional[str], typer.Argument(  # noqa: UP045
        help="Destination name from conn.yml (omit with --type).")] = None,
    type_name: TypeOpt = None,
    config: ConfigFileOpt = None,
    sync_name: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--sync", help="Load with this conn.yml sync (repeatable): its 'stream' names the "
        "Singer stream; its consent, mapping, object and mode apply.")] = None,
    objects: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--object", "-o", help="Without --sync: destination object for every stream, or "
        "STREAM=OBJECT (repeatable). Default: the object named like the stream.")] = None,
    mode: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--mode", help="Without --sync: upsert (default), insert, update, append, "
        "mirror.")] = None,
    match_key: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--match-key", help="Without --sync: the object's identifier to match on.")] = None,
    primary_key: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--primary-key", help="Key columns when the SCHEMA has no key_properties and no "
        "sync sets primary_key (repeatable).")] = None,
    loader: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--name", help="This loader's name, which keys conn's planning state (default: "
        "the destination's name; with --type, $MELTANO_LOADER_NAME or the type and a "
        "digest of the config).")] = None,
    state_dir: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--state-dir", help="conn's planning state (default: the project's, or ./.conn "
        "with --type).")] = None,
    input_file: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--input", help="Read Singer messages from this file instead of stdin.")] = None,
    batch_rows: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--batch-rows", help="Rows per batch.")] = None,
    full_resync: Annotated[bool, typer.Option("--full-resync", help="Send rows even if "
                           "unchanged since the last run.")] = False,
    about: AboutOpt = False,
    fmt: FormatOpt = "json",
    project: ProjectOpt = None,
) -> None:
    """Run a conn destination as a Singer target: Singer messages on stdin go through the
    consent gate, the mapping and the planner; each STATE is echoed on stdout once the
    records before it are acknowledged."""
    from conn.cli.singer_cmd import run_target

    run_target(destination, type_name=type_name, config_file=config, project=project,
               sync_names=sync_name or [], objects=objects or [], mode=mode,
               match_key=match_key, primary_key=primary_key or [], state_dir=state_dir,
               batch_rows=batch_rows, full_resync=full_resync, input_file=input_file,
               about_=about, fmt=fmt, loader=loader)


def _interrupted() -> None:
    from conn import interrupt

    if not interrupt.is_requested():  # a stopped run has said so in its report already
        sys.stderr.write("interrupted; acknowledged rows are saved, the rest stay pending "
                         "(run the sync again to send them)\n")
    sys.exit(130)


def _click_exception() -> type[Exception]:
    """Click's exception root (typer vendors click from 0.2x on)."""
    try:
        from typer._click.exceptions import ClickException as Vendored
    except ImportError:  # typer with click as a dependency
        from click.exceptions import ClickException

        return ClickException
    return Vendored


@alerts_app.command("list")
def alerts_list(project: ProjectOpt = None, json_out: JsonOpt = False) -> None:
    """Each alert rule, its channels and its last state per sync (firing or ok, when the
    last notice went, what it said, the last delivery error)."""
    from conn.cli.alerts_cmd import list_alerts

    list_alerts(project, json_out=json_out)


@alerts_app.command("test")
def alerts_test(
    rule: Annotated[Optional[str], typer.Argument(  # noqa: UP045
        help="Send through this rule's channels (default: every channel).")] = None,
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Send a test notice; exit 1 if a channel did not take it (the error says why)."""
    from conn.cli.alerts_cmd import send_test

    send_test(rule, project, json_out=json_out)


def _fail(exc: BaseException, code: int, message: str, json_mode: bool) -> None:
    """Report an error (a JSON object on stdout too with ``--json``) and exit."""
    from conn.cli.output import error, print_json

    if json_mode:
        from conn.cli.output import error_object

        print_json(error_object(exc, code, message))
    error(message)
    sys.exit(code)


def main() -> None:
    """Console entry point: maps conn's errors to messages and exit codes. With
    ``--json`` every error also prints one JSON object on stdout."""
    from conn.errors import ConnError

    json_mode = "--json" in sys.argv[1:]
    click_exception = _click_exception()
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except ConnError as exc:
        _fail(exc, exc.exit_code, str(exc), json_mode)
    except click_exception as exc:  # usage: unknown command or option, missing argument
        if json_mode:
            from conn.cli.output import print_json

            print_json(error_object_for_usage(exc))
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except (KeyboardInterrupt, typer.Abort):
        _interrupted()
    except SystemExit as exc:
        # typer turns Ctrl-C into a silent exit 130; say what happened to the data.
        if exc.code == 130:
            _interrupted()
        raise
    except Exception as exc:
        if os.environ.get("CONN_DEBUG"):
            raise
        _fail(exc, 1, f"unexpected {type(exc).__name__}: {exc} (set CONN_DEBUG=1 for the "
              f"traceback; please report it)", json_mode)


def error_object_for_usage(exc: Exception) -> dict[str, object]:
    """The ``--json`` error object of a command-line usage error."""
    from conn.cli.output import error_object

    return error_object(exc, int(getattr(exc, "exit_code", 2)),
                        str(getattr(exc, "format_message", lambda: exc)()))


def entry() -> None:
    """The ``conn`` console script: :func:`main`, then a quick exit.

    Once the command is done and only the main thread is left, the process ends after
    flushing its output and running the ``atexit`` handlers (log handlers, temporary
    folders), without the interpreter's teardown: its garbage collection over every
    imported module's objects took ~60 ms of a ~1.2 s sync (Python does not promise
    ``__del__`` at exit either way). Any other thread still running gets the normal
    exit, which waits for it.

    Collections of the youngest generation are also made rarer (every 50,000 new
    objects instead of 700): start-up, importing pyarrow, DuckDB, typer and jsonschema,
    triggered ~130 collections (~27 ms); a sync itself creates few Python objects."""
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    try:
        main()
        code: int | str | None = 0
    except SystemExit as exc:
        code = exc.code
    from conn import interrupt

    if threading.active_count() > 1 and not interrupt.is_requested():
        sys.exit(code)  # wait for the other threads, as Python would
    # (A stopped run may leave a thread blocked in a request it gave up on: not waited.)
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")  # sys.exit("message") prints it and exits 1
        code = 1
    code = code or 0
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        code = code or 120  # Python's own exit code when flushing stdout fails
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    entry()
