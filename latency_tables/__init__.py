"""Measured latency lookup tables (``*.json``), shipped as package data of ``edgenas.latency_tables``."""
