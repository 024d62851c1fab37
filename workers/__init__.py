"""The arq worker process (``nectar worker``)."""
