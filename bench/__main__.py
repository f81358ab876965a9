"""``python -m bench``. Kept empty of imports: spawn-context children import it too."""

if __name__ == "__main__":
    from bench._run import main

    raise SystemExit(main())
