"""The extract-stage verbs of the ``biastransfer`` command line: the only place in ``extract`` that
imports argparse. ``analyze.cli`` registers them (one module per verb; shared options in
:mod:`extract.cli.options`, the one-sentence parser in :mod:`extract.cli.parser`)."""
