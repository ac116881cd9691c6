"""Reading a pysfu server's /metrics as a test sees it."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def metrics_text(http_base: str) -> str:
    """The /metrics page of the server at ``http_base`` (http://host:port)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{http_base}/metrics") as response:
            return await response.text()


async def scrape(http_base: str) -> dict[str, float]:
    """Every sample of /metrics, keyed as the page writes it: 'name' or
    'name{label="value",...}' (labels in the server's order)."""
    samples = {}
    for family in text_string_to_metric_families(await metrics_text(http_base)):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sample.labels.items())
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
