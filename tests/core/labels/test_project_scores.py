"""Model-assisted labelling in the core: the unlabelled clip the model is least sure about."""
from __future__ import annotations

from echoquality_core.labels.project import Project


def test_most_uncertain_picks_the_unlabelled_clip_closest_to_the_threshold(project_copy):
    project = Project(project_copy)
    project.scan()
    rels = [c.rel for c in project.clips]
    labelled = [r for r in rels if project.label(r) is not None]
    unlabelled = [r for r in rels if project.label(r) is None]
    assert len(labelled) >= 2 and len(unlabelled) >= 3
    # A labelled clip sits exactly on the threshold: it must be passed over.
    scores = {labelled[0]: 0.40, unlabelled[0]: 0.90, unlabelled[1]: 0.35,
              unlabelled[2]: 0.05}
    assert project.most_uncertain(scores, 0.40) == unlabelled[1]
    # The clip on screen is left out, so pressing the key again moves on.
    assert project.most_uncertain(scores, 0.40, after=unlabelled[1]) == unlabelled[2]
    # The threshold decides: near 0 the lowest score is the most uncertain.
    assert project.most_uncertain(scores, 0.0) == unlabelled[2]
    # Clips without a score are never chosen; none left -> None.
    assert project.most_uncertain({labelled[0]: 0.5}, 0.5) is None
    assert project.most_uncertain({}, 0.5) is None

    project.set_label(unlabelled[1], 1.0)
    assert project.most_uncertain(scores, 0.40) == unlabelled[2]
    assert project.most_uncertain(scores, 0.80) == unlabelled[0]


def test_most_uncertain_ties_go_to_the_next_clip_in_list_order(project_copy):
    project = Project(project_copy)
    project.scan()
    unlabelled = [c.rel for c in project.clips if project.label(c.rel) is None]
    a, b, c = unlabelled[:3]
    scores = {a: 0.6, b: 0.4, c: 0.6}  # all 0.1 away from 0.5
    assert project.most_uncertain(scores, 0.5) == a
    assert project.most_uncertain(scores, 0.5, after=a) == b
    assert project.most_uncertain(scores, 0.5, after=b) == c
    assert project.most_uncertain(scores, 0.5, after=c) == a  # wraps round


def test_cache_dir_is_inside_the_project(project_copy):
    assert Project(project_copy).cache_dir == project_copy.resolve() / ".echoquality" / "cache"
