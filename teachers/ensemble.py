"""``ensemble``: several frozen teachers read as one, their outputs averaged. Read as class logits (each member with
``output: logits``), one ``kd`` term then fits the ensemble's posterior through one head, as Hinton et al. (2015)
distil an ensemble, where one term per teacher (``--teacher A --teacher B``) asks the student's features to serve
each teacher's head apart."""
from __future__ import annotations

import hashlib

import torch
from torch import nn

import mvmr
from mvmr.providers import Provider


class Ensemble(Provider):
    """The mean of its members' outputs, each member with its own preprocessing. Averaged logits are the
    normalised geometric mean of the members' posteriors at every temperature."""

    description = "mean of frozen teachers' outputs"

    def __init__(self, members: list[Provider]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def output_dim(self, height: int, width: int) -> int:
        return self.members[0].output_dim(height, width)

    def check_input_size(self, height: int, width: int) -> None:
        dims = [m.output_dim(height, width) for m in self.members]
        if len(set(dims)) != 1:
            raise ValueError(f"members give outputs of widths {dims}; an ensemble averages outputs of one width "
                             f"(e.g. every member's class logits, output: logits)")
        for m in self.members:
            m.check_input_size(height, width)

    def weights_digest(self) -> str:
        return hashlib.sha256("|".join(m.fingerprint() for m in self.members).encode()).hexdigest()

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(images).float() for m in self.members]).mean(0)


@mvmr.register_teacher("ensemble")
def ensemble_teacher(members: list) -> Ensemble:
    """ensemble: the mean of its members' outputs, members: [{teacher: NAME, params: {...}}, ...].
    Each member is built as ``providers.NAME`` would be; give every member ``output: logits`` to distil the
    ensemble's class posterior (``mvmr distill --ensemble`` writes this list from the ``--teacher`` flags)."""
    if not isinstance(members, list) or len(members) < 2:
        raise ValueError("members must list two or more {teacher: NAME, params: {...}} entries")
    built = []
    for i, member in enumerate(members):
        if not isinstance(member, dict) or "teacher" not in member or set(member) - {"teacher", "params"}:
            raise ValueError(f"members[{i}] must be {{teacher: NAME, params: {{...}}}}, got {member!r}")
        built.append(mvmr.create_teacher(member["teacher"], **member.get("params", {})))
    return Ensemble(built)
