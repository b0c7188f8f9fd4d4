"""``llm-supervisorctl export kubernetes|compose -o DIR``: read the units as ``verify`` does (no
daemon), build the Stack, write the files, say what was left out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TYPE_CHECKING = False  # typing is not imported at run time: llm-supervisorctl starts faster
if TYPE_CHECKING:
    from typing import Any


def _image(text: str) -> tuple[str, str]:
    name, equals, reference = text.partition("=")
    if not equals or not name or not reference:
        raise argparse.ArgumentTypeError(f"expected SERVICE=IMAGE, got {text!r}")
    return name, reference


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parser(sub: Any) -> None:
    export = sub.add_parser("export", help="the units as Kubernetes manifests or a Swarm stack "
                                           "(no daemon needed)")
    engines = export.add_subparsers(dest="engine", required=True)
    for engine, description in (("kubernetes", "Deployments, Services, Ingress, PVC"),
                                ("compose", "stack.yaml for docker stack deploy, compose.yaml")):
        parser = engines.add_parser(engine, help=description)
        parser.add_argument("-o", "--output", type=Path, required=True, help="directory to write")
        parser.add_argument("--units-dir", type=Path)
        parser.add_argument("--replicas", type=_positive,
                            help="model service replicas (default: MODEL_REPLICAS, 1)")
        parser.add_argument("--image", type=_image, action="append", default=[],
                            metavar="SERVICE=IMAGE",
                            help="image of a service, or of the gateway (repeatable)")
        parser.add_argument("--image-prefix", default="llm-supervisord/",
                            help="for units built from Build=: IMAGE is PREFIX<service>:latest")
        parser.add_argument("--include-desktop", action="store_true",
                            help="also export the test desktop's units that have a [Container]")
        parser.add_argument("--secret-env", choices=("auto", "all"), default="auto",
                            help="Environment= values kept out of the manifests (a Secret / a "
                                 "0600 env_file): those of keys that look secret (auto), or all")
        if engine == "kubernetes":
            parser.add_argument("--storage", default="20Gi", help="model volume size (20Gi)")
            parser.add_argument("--storage-class", help="model volume's storage class")
            parser.add_argument("--ingress-class", help="the Ingress's ingressClassName")
        else:
            parser.add_argument("--publish-mode", choices=("ingress", "host"), default="ingress",
                                help="swarm port publishing: the routing mesh (ingress) or "
                                     "each node's own port (host; one gateway task per node)")
            parser.add_argument("--gateway-host", default="127.0.0.1",
                                help="address compose.yaml publishes the gateway on (127.0.0.1; "
                                     "0.0.0.0 opens it to the network)")
            parser.add_argument("--bind-model-dir", action="store_true",
                                help="the model volume is this machine's MODEL_PATH (must exist "
                                     "on every node)")


def catalog_note(units: list[str]) -> str:
    return (f"model catalog: {', '.join(u.removesuffix('.service') for u in units)} exported as "
            "their own always-on services (replicas 1); loading on demand, KeepAlive= and the "
            "memory budget stay in llm-supervisord: scale-to-zero there needs an autoscaler "
            "(e.g. KEDA's HTTP add-on or Knative), and the model router is not exported (send "
            "each model's requests to its service)")


def run(args: argparse.Namespace) -> int:
    from llm_supervisor.cli.common import settings_from
    from llm_supervisor.config.paths import PROJECT_DIR
    from llm_supervisor.export import writer
    from llm_supervisor.export.model import ExportError, build_stack
    from llm_supervisor.units.catalog import load_catalog
    from llm_supervisor.units.checks import cross_unit_problems
    from llm_supervisor.units.loader import load_directory
    from llm_supervisor.units.model_units import add_model_units

    settings = settings_from(args)
    result = load_directory(settings.units_dir, settings.expansion_vars())
    # The user's catalog only (MODELS_DIR): the shipped SmolLM2 examples serve offline use here
    # and are not pushed into a cluster nobody asked them for.
    catalog_units = add_model_units(result, settings.expansion_vars(),
                                    load_catalog(settings.model_catalog_dirs[-1:]),
                                    settings.resolved_models_port_base)
    problems = [str(error) for error in (*result.errors, *cross_unit_problems(result))]
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"nothing exported: {len(problems)} unit file problem(s); fix them (see "
              "llm-supervisorctl verify)", file=sys.stderr)
        return 1
    try:
        stack = build_stack(result, model_dir=settings.effective_model_path,
                            project_dir=PROJECT_DIR,
                            replicas=args.replicas or settings.model_replicas,
                            images=dict(args.image), image_prefix=args.image_prefix,
                            include_desktop=args.include_desktop)
        if catalog_units:
            stack.notes.append(catalog_note(catalog_units))
        if not stack.services:
            print(f"nothing to export: no unit in {settings.units_dir} has a [Container]",
                  file=sys.stderr)
            return 1
        if args.engine == "kubernetes":
            written, notes = writer.write_kubernetes(
                stack, args.output, storage=args.storage, storage_class=args.storage_class,
                ingress_class=args.ingress_class, secret_env=args.secret_env)
        else:
            written, notes = writer.write_compose(
                stack, args.output, gateway_port=settings.gateway_port,
                publish_mode=args.publish_mode, secret_env=args.secret_env,
                gateway_host=args.gateway_host,
                model_dir_bind=settings.effective_model_path if args.bind_model_dir else None)
    except (ExportError, ValueError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(writer.summary(stack, written, notes))
    return 0
