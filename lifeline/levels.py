"""Warning levels: four colours, as in Chinese emergency practice (CONTRACT §3).

Inside the pipeline a level is a small integer so detectors can compare them in numpy:
0 means no condition, 1 blue (IV, general) up to 4 red (I, especially serious).
"""

LEVELS = ("blue", "yellow", "orange", "red")  # lowest first; index + 1 is the level number
NONE = 0
LEVEL_NUMBER = {name: i + 1 for i, name in enumerate(LEVELS)}
ROMAN = {"red": "I", "orange": "II", "yellow": "III", "blue": "IV"}


def level_name(number: int) -> str | None:
    """Colour of a level number, None for 0."""
    return LEVELS[number - 1] if number > 0 else None
