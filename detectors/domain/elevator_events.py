"""Lift events in the words of GB/T 24476 (lift monitoring data): code, zh-CN and English name,
and what the operator should do about each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LiftEvent:
    code: str
    zh: str
    en: str
    action: str  # what the operator does next

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "zh": self.zh, "en": self.en}


EVENTS: dict[str, LiftEvent] = {e.code: e for e in (
    LiftEvent("entrapment", "困人", "Passenger entrapment", "dispatch 96333 rescue now (on site within 30 min)"),
    LiftEvent("overspeed", "超速", "Over-speed", "take the lift out of service; check governor and safety gear"),
    LiftEvent("door_open_moving", "运行中开门", "Door open while running",
              "take the lift out of service; check the door-lock circuit"),
    LiftEvent("unintended_movement", "轿厢意外移动", "Unintended car movement with the door open",
              "take the lift out of service; check the brake and the UCM protection"),
    LiftEvent("stop_outside_zone", "门区外停梯", "Stopped outside the door zone",
              "check the car for passengers; send maintenance"),
    LiftEvent("door_fault", "反复开关门", "Repeated door opening (door fault)",
              "send maintenance; check the door operator and obstructions"),
    LiftEvent("position_lost", "楼层位置丢失", "Floor position lost", "send maintenance; re-level the car"),
)}
