"""Device specs (``*.toml``) and the standalone on-device benchmark runner, shipped as package data of
``edgenas.devices`` so they are found from a wheel install as well as from a checkout."""
