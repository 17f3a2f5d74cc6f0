"""``python -m vecbox.cli``: the ``vecbox`` program."""

from vecbox.cli import main

if __name__ == "__main__":
    main()
