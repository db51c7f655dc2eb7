"""A client process that makes a command print its secrets and fail, and reports what the error shows.

``python secret_client.py PROVIDER SECRET_NAME PER_CALL_VALUE [SANDBOX_ID]``: with a sandbox id it
reconnects (``from_id``) instead of creating, so it never names the secret itself. Prints one JSON
line: the error's code, everything it shows (str, repr, message, args, traceback) and the raw
``.result`` output. A sandbox it created it closes.
"""

from __future__ import annotations

import json
import sys
import traceback

from sandboxkit import Sandbox, SandboxError


def main(provider: str, secret: str, per_call: str, sandbox_id: str | None) -> None:
    if sandbox_id:
        sb = Sandbox.from_id(sandbox_id, provider=provider)
    else:
        sb = Sandbox.create(provider=provider, secrets=[secret], timeout=120)
    try:
        sb.execute("env; exit 3", check=True, env={"PER_CALL": per_call})
    except SandboxError as err:
        shown = [str(err), repr(err), err.message, *map(str, err.args), *traceback.format_exception(err)]
        raw = err.result.output if err.result is not None else ""
        print(json.dumps({"code": str(err.code), "shown": "\n".join(shown), "raw": raw}), flush=True)
    else:
        print(json.dumps({"code": None}), flush=True)
    finally:
        if not sandbox_id:
            sb.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
