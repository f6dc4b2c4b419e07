"""`python -m mock_llm`: serve the OpenAI-compatible mock provider."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return number


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the mock server until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m mock_llm",
        description="OpenAI-compatible mock LLM provider with scripted replies and faults.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8399)
    parser.add_argument("--latency-ms", type=_non_negative_int, default=0)
    parser.add_argument("--error-rate", type=_fraction, default=0.0)
    parser.add_argument("--stream-delay-ms", type=_non_negative_int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from mock_llm.server import run

    run(
        args.host,
        args.port,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        stream_delay_ms=args.stream_delay_ms,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
