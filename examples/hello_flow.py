"""A first fluvial flow: tasks, a retry, concurrent submission and a map, all in-process.

Run it with ``python examples/hello_flow.py``. Nothing else starts: no server, no database.
"""

from __future__ import annotations

import random

from fluvial import flow, get_run_logger, task, unmapped
from fluvial.runners import ThreadPoolTaskRunner


@task
def fetch_temperatures(city: str) -> list[float]:
    """Stand in for a slow API call."""
    rng = random.Random(city)
    return [round(rng.uniform(-5, 30), 1) for _ in range(24)]


@task(retries=3, retry_delay_seconds=0.1)
def flaky_average(readings: list[float], attempts: list[int]) -> float:
    """Fail the first time, to show a retry."""
    attempts.append(1)
    if len(attempts) == 1:
        raise ConnectionError("the sensor network blinked")
    return sum(readings) / len(readings)


@task
def to_fahrenheit(celsius: float, digits: int) -> float:
    """Convert one reading."""
    return round(celsius * 9 / 5 + 32, digits)


@flow(task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=True)
def weather_report(cities: list[str]) -> dict[str, float]:
    """Fetch every city concurrently, average each, and convert to Fahrenheit."""
    logger = get_run_logger()
    futures = {city: fetch_temperatures.submit(city) for city in cities}
    averages = {city: flaky_average(fut.result(), []) for city, fut in futures.items()}
    fahrenheit = to_fahrenheit.map(list(averages.values()), unmapped(1)).result()
    report = dict(zip(averages, fahrenheit, strict=True))
    logger.info("averaged %d cities", len(report))
    for city, value in report.items():
        print(f"{city}: {value} °F")
    return report


if __name__ == "__main__":
    state = weather_report(["Lyon", "Porto", "Oslo"], return_state=True)
    print(f"final state: {state}; result: {state.result()}")
