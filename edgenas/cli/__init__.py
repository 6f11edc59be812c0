"""The ``edgenas`` command line."""
