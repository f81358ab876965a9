"""Entry point of the runtime's own processes: ``python -m runtime._main ROLE OPTIONS``.

Kept apart from the modules it starts so that running it as ``__main__`` never
imports a module twice.
"""

import sys

if __name__ == "__main__":
    if sys.argv[1] == "worker":
        from runtime.worker import main
    else:
        from runtime.supervisor import main
    main(sys.argv[2])
