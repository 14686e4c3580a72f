"""Two small labelled text files unlike the bundled review snippets, to check the defaults on unfamiliar data.

    python examples/data/make_datasets.py          # writes messages.csv and statements.csv beside this file

- messages.csv: 1,000 short customer messages to a delivery service, `complaint` or `other`, about 1:3
  (an imbalanced two-class task with short texts).
- statements.csv: 1,100 statements of 60 to 140 words from a council's public consultation, about `transport`,
  `housing` or `health` (three unequal classes; long texts that the default 64-token limit truncates). Each
  statement also mentions one of the other topics in passing, so the words of one topic do not settle it alone.

Texts are assembled from phrase pools with a seeded generator; 3% of the labels are flipped, as in real
annotations, so no model reaches 100%.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

# ---- messages: complaint vs other -----------------------------------------------------------------------
ITEMS = ["parcel", "order", "package", "delivery", "box", "shipment", "sofa", "fridge", "laptop", "jacket",
         "birthday present", "groceries", "prescription", "books", "phone charger"]
WHEN = ["yesterday", "on Monday", "last week", "this morning", "two days ago", "on Friday", "at the weekend"]
COMPLAINT = [
    "my {item} arrived {broken}", "the {item} I ordered {when} never turned up", "still waiting for my {item}, "
    "this is {bad}", "your driver left my {item} in the rain and it is {broken}", "I was charged twice for the "
    "{item}", "the {item} came {late} and nobody answered the phone", "why has nobody replied about my missing "
    "{item}?", "the courier was rude and threw my {item} over the fence", "I want a refund, the {item} is "
    "{broken}", "the tracking says delivered but there is no {item} here", "third time my {item} has been "
    "{late}, {bad}", "the wrong {item} was delivered {when} and I am {upset}", "I am {upset}, the {item} was "
    "opened before it reached me", "nobody came to collect the {item} although I waited all day"]
OTHER = [
    "can you tell me when my {item} will arrive?", "thanks, the {item} came {early}", "please deliver the {item} "
    "to my neighbour at number 12", "is it possible to change the address for my {item}?", "the {item} arrived "
    "{when}, {good}", "do you deliver on Sundays?", "how do I track my {item}?", "I would like to order another "
    "{item}", "could the driver ring the bell twice, the {item} is for my grandmother", "what time does the depot "
    "open {when2}?", "just confirming the {item} is booked for tomorrow", "the driver was {nice}, thank you",
    "can I pay for the {item} on delivery?", "please leave the {item} in the porch if I am out",
    "I was not sure the {item} would fit but it is fine, {good}"]
SLOTS = {
    "broken": ["broken", "damaged", "crushed", "soaking wet", "in pieces", "dented", "smashed"],
    "bad": ["unacceptable", "ridiculous", "really poor service", "a disgrace", "not good enough"],
    "late": ["late", "four days late", "a week late", "after the date you promised"],
    "upset": ["very annoyed", "fed up", "angry", "disappointed", "furious"],
    "early": ["early", "a day early", "right on time", "before lunch"],
    "good": ["great job", "many thanks", "all good", "perfect", "much appreciated", "cheers"],
    "nice": ["very kind", "really helpful", "friendly", "lovely", "polite"],
    "when2": ["tomorrow", "on Saturday", "next week", "on the bank holiday"],
}


def fill(rng: random.Random, template: str) -> str:
    values = {k: rng.choice(v) for k, v in SLOTS.items()}
    values.update(item=rng.choice(ITEMS), when=rng.choice(WHEN))
    text = template.format(**values)
    if rng.random() < 0.3:
        text = rng.choice(["Hi, ", "Hello, ", "Dear team, ", "Order 4471: ", "Re: ", ""]) + text
    if rng.random() < 0.2:
        text += rng.choice([" Thanks.", " Regards, Sam", " Sent from my phone", " Please reply."])
    return text[0].upper() + text[1:]


def messages(n: int = 1000, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = "complaint" if rng.random() < 0.25 else "other"
        rows.append((fill(rng, rng.choice(COMPLAINT if label == "complaint" else OTHER)), label))
    return rows


# ---- statements: transport, housing or health -----------------------------------------------------------
TOPIC = {
    "transport": [
        "The number {n} bus is so unreliable that {who} cannot get to work on time.",
        "We need a safe cycle lane on {street}, where traffic is far too fast.",
        "Trains to the city are overcrowded at rush hour and the fares keep rising.",
        "Potholes on {street} have damaged several cars this winter.",
        "The council should extend the tram line past the retail park.",
        "Parking near the station is impossible, so {who} drive all the way into town.",
        "A pedestrian crossing outside the school on {street} would save lives.",
        "Evening buses stop running before the late shift at the hospital ends.",
        "Lorries use {street} as a shortcut and the road is not built for them.",
        "More charging points for electric cars would help people switch."],
    "housing": [
        "Rents on {street} have risen by a third while wages have not moved.",
        "{who} cannot afford a deposit and are stuck in damp rented flats.",
        "The empty offices on {street} could be turned into affordable homes.",
        "Landlords should have to fix mould and broken heating within a week.",
        "Too many new flats are sold to investors and stay empty.",
        "The waiting list for council homes is now over {n} families long.",
        "Young families are leaving the town because they cannot find a house.",
        "Planning permission for the new estate ignored the need for social housing.",
        "Short-term holiday lets have taken over whole streets near the harbour.",
        "Older residents want smaller homes nearby so they can stay in the area."],
    "health": [
        "It takes three weeks to see a GP at the surgery on {street}.",
        "The walk-in clinic closed and {who} now wait hours in A&E instead.",
        "Mental health support for teenagers has a waiting list of {n} weeks.",
        "The pharmacy on {street} keeps running out of common prescriptions.",
        "Dentists in the town no longer take new patients on the NHS.",
        "Carers for elderly relatives get almost no respite or advice.",
        "The hospital needs more nurses on the night shift.",
        "Free health checks for over-fifties would catch problems earlier.",
        "The air near the ring road is making children's asthma worse.",
        "Community midwives are stretched so thin that visits are cancelled."],
}
FILLER = [
    "I have lived here for {n} years.", "I am writing as a parent of two.", "Thank you for asking residents.",
    "This affects everyone in our street.", "I hope the council listens this time.",
    "Many of my neighbours feel the same.", "I have raised this before without an answer.",
    "Please consider this carefully.", "Our councillor agreed at the last meeting.",
    "It is getting worse every year.", "I would be happy to discuss this further."]
STREETS = ["Mill Lane", "the High Street", "Station Road", "Church Street", "the ring road", "Park Avenue"]
WHO = ["my neighbours", "students", "nurses", "pensioners", "my children", "shift workers", "local families"]
PASSING = {
    "transport": "Housing and the clinics matter too, but my main concern is getting around.",
    "housing": "Buses and health services matter too, but a home comes first.",
    "health": "Roads and rents are problems as well, but health care is what worries me most."}


def sentence(rng: random.Random, template: str) -> str:
    return template.format(n=rng.randint(2, 40), street=rng.choice(STREETS), who=rng.choice(WHO).capitalize()
                           if template.startswith("{who}") else rng.choice(WHO))


def statement(rng: random.Random, label: str) -> str:
    others = [t for t in TOPIC if t != label]
    main = [sentence(rng, s) for s in rng.sample(TOPIC[label], rng.randint(2, 4))]
    aside = [sentence(rng, rng.choice(TOPIC[rng.choice(others)]))]
    filler = [sentence(rng, s) for s in rng.sample(FILLER, rng.randint(2, 4))]
    parts = filler[:1] + aside + main + filler[1:]       # the other topic often comes first
    if rng.random() < 0.5:
        parts.insert(len(parts) - 1, PASSING[label])
    text = " ".join(parts)
    while len(text.split()) < 60:
        text += " " + sentence(rng, rng.choice(FILLER))
    return " ".join(text.split()[:140])


def statements(n: int = 1100, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    weights = {"housing": 0.42, "transport": 0.34, "health": 0.24}
    labels = rng.choices(list(weights), weights=list(weights.values()), k=n)
    return [(statement(rng, y), y) for y in labels]


def flip(rows: list[tuple[str, str]], share: float, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed + 1)
    classes = sorted({y for _, y in rows})
    return [(t, rng.choice([c for c in classes if c != y]) if rng.random() < share else y) for t, y in rows]


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


if __name__ == "__main__":
    write(HERE / "messages.csv", flip(messages(), 0.03, seed=0))
    write(HERE / "statements.csv", flip(statements(), 0.03, seed=0))
    print(f"wrote {HERE / 'messages.csv'} and {HERE / 'statements.csv'}")
