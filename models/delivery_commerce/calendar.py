"""The calendar as data: which days are weekdays, seasons and quarter ends.

Built once per config, in numpy, from ``sampling.start`` and the
``calendar`` section: a table with one entry per day from the start's
midnight, which the model indexes by a (traced) day number. Times in the
model are whole days plus integer seconds of the day, so calendar columns
agree with the stored timestamps to the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
SECONDS_PER_DAY = 86_400
SECONDS_PER_HOUR = 3_600
# Runs start after their PR merged; the table reaches this far past the merge
# window (a run later than that reads the last day's flags).
HORIZON_DAYS = 120
HOLIDAY, FREEZE = "holiday_shopping", "code_freeze"  # seasons the mechanisms read


@dataclass(frozen=True)
class DayTable:
    """Flags and weekday of each day from the start's midnight, and where the start falls in it."""

    start_second: int              # seconds from the start's midnight to sampling.start
    weekday: np.ndarray            # (days,) index into WEEKDAYS
    end_of_quarter: np.ndarray     # (days,) bool
    seasons: dict[str, np.ndarray]  # name -> (days,) bool

    @property
    def n_days(self) -> int:
        return len(self.weekday)


def parse_start(start: str) -> datetime:
    return datetime.fromisoformat(start.replace("Z", "+00:00"))


def month_day(text: str) -> tuple[int, int]:
    """"MM-DD" as (month, day); raises ValueError when it is not a calendar day."""
    month, _, day = text.partition("-")
    date(2024, int(month), int(day))  # a leap year: 02-29 is a day
    return int(month), int(day)


def _in_range(days: list[date], first: tuple[int, int], last: tuple[int, int]) -> np.ndarray:
    keys = [(d.month, d.day) for d in days]
    if first <= last:
        return np.array([first <= k <= last for k in keys])
    return np.array([k >= first or k <= last for k in keys])  # wraps the year end


def _quarter_end(d: date) -> date:
    month = 3 * ((d.month - 1) // 3) + 3
    first_of_next = date(d.year + (month == 12), month % 12 + 1, 1)
    return first_of_next - timedelta(days=1)


def day_table(start: str, calendar) -> DayTable:
    moment = parse_start(start)
    first = moment.date()
    days = [first + timedelta(days=i) for i in range(int(calendar.window_days) + HORIZON_DAYS)]
    return DayTable(
        start_second=moment.hour * SECONDS_PER_HOUR + moment.minute * 60 + moment.second,
        weekday=np.array([d.weekday() for d in days], np.int32),
        end_of_quarter=np.array([(_quarter_end(d) - d).days < calendar.end_of_quarter_days for d in days]),
        seasons={name: _in_range(days, month_day(s["from"]), month_day(s["to"]))
                 for name, s in calendar.seasons.items()},
    )


def _days(rows, column: str, config) -> tuple[DayTable, np.ndarray, np.ndarray]:
    """The day table, and each row's day in it and second of that day, from a timestamp
    column in milliseconds since the epoch (as validation rules read them)."""
    cal = day_table(config.sampling["start"], config.params.calendar)
    moment = parse_start(config.sampling["start"])
    midnight_s = int(moment.timestamp()) - cal.start_second
    seconds = np.asarray(rows[column], np.int64) // 1000 - midnight_s
    day = np.clip(seconds // SECONDS_PER_DAY, 0, cal.n_days - 1)  # the model reads the last day past the table
    return cal, day, seconds % SECONDS_PER_DAY


def _weekday_name(rows, column: str) -> np.ndarray:
    return np.asarray(rows[column], object)


def merge_calendar_agrees(rows, config) -> np.ndarray:
    """A PR's calendar columns (``rows``: column name → values) are those of its ``merged_at``."""
    cal, day, second = _days(rows, "merged_at", config)
    return ((np.asarray(rows["merge_hour"]) == second // SECONDS_PER_HOUR)
            & (_weekday_name(rows, "merge_weekday") == np.asarray(WEEKDAYS)[cal.weekday[day]])
            & (np.asarray(rows["is_end_of_quarter"]) == cal.end_of_quarter[day])
            & (np.asarray(rows["is_code_freeze"]) == cal.seasons[FREEZE][day])
            & (np.asarray(rows["is_holiday_season"]) == cal.seasons[HOLIDAY][day]))


def run_calendar_agrees(rows, config) -> np.ndarray:
    """A run's calendar columns (``rows``: column name → values) are those of its ``started_at``."""
    cal, day, second = _days(rows, "started_at", config)
    return ((np.asarray(rows["hour_of_day"]) == second // SECONDS_PER_HOUR)
            & (_weekday_name(rows, "day_of_week") == np.asarray(WEEKDAYS)[cal.weekday[day]])
            & (np.asarray(rows["is_holiday_season"]) == cal.seasons[HOLIDAY][day]))
