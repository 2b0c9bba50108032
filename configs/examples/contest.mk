# Contest-day Makefile: copy it into your contest folder (never over olymp's own Makefile), e.g.
#   cp configs/examples/contest.mk ~/contest/Makefile && cd ~/contest && make submit DATA=data
# and set the variables (here or on the command line):
#   make features          # embeddings of train and test (interrupted? run it again: it resumes)
#   make cv                # cross-validated head, scores, report pictures
#   make submit            # the submission CSV
#   make submit HEAD=lgbm  # another head next to the first: features are reused
# `olymp` must be on PATH (`source OLYMP_CHECKOUT/.venv/bin/activate`), or pass OLYMP=path/to/olymp.
# Targets depend on each other through their output files: a step's stamp (*.done) is written
# only after it succeeded, so an interrupted extract is resumed, never trusted.
# Try it on the demo:
#   python -m pipelines.devtools.demo demo_data && make -f configs/examples/contest.mk submit DATA=demo_data

# train/ and test/ inside: folders of files, or id,path listings
DATA ?= data
# id,label
LABELS ?= $(DATA)/train_labels.csv
# the contest's sample submission (row order, column names); empty: none
SAMPLE ?=
OUT ?= out
# which one: olymp recommend $(DATA)/train --time-budget 20m
BACKBONE ?= efficientnet_lite0
# more extract options, e.g. --batch-size 64 --device cuda
EXTRACT ?=
# logreg | mlp | lgbm (logreg: the best CV score per second measured on CPU; see the README's heads section)
HEAD ?= logreg
# more train-head options, e.g. --param C=0.1 --metric auc (lgbm: --param num_leaves=31)
TRAIN ?=
FOLDS ?= 5
# the olymp command: `olymp` on PATH after `source .venv/bin/activate` in the olymp checkout
OLYMP ?= olymp

ifeq ($(shell command -v $(firstword $(OLYMP)) 2>/dev/null),)
$(error $(firstword $(OLYMP)) not found: run `source OLYMP_CHECKOUT/.venv/bin/activate` first, or pass OLYMP=OLYMP_CHECKOUT/.venv/bin/olymp)
endif

# One embedding dir per backbone and one run per head, so switching back costs nothing.
EMB := $(OUT)/emb/$(BACKBONE)
RUN := $(OUT)/run-$(HEAD)-$(BACKBONE)
SUBMISSION := $(OUT)/submission-$(HEAD)-$(BACKBONE).csv

.PHONY: features cv submit FORCE
.DELETE_ON_ERROR:

features: $(EMB)/train.done $(EMB)/test.done

$(EMB)/%.done:
	$(OLYMP) extract $(DATA)/$* -o $(EMB)/$* --backbone $(BACKBONE) $(EXTRACT) --quiet
	touch $@

cv: $(RUN)/manifest.json
	$(OLYMP) report $(RUN)

$(RUN)/manifest.json: $(EMB)/train.done $(LABELS) $(RUN).settings
	$(OLYMP) train-head $(EMB)/train --labels $(LABELS) --head $(HEAD) --folds $(FOLDS) $(TRAIN) -o $(RUN) --overwrite --quiet

submit: $(SUBMISSION)

$(SUBMISSION): $(RUN)/manifest.json $(EMB)/test.done
	$(OLYMP) predict $(RUN) $(EMB)/test -o $@ $(if $(SAMPLE),--sample-submission $(SAMPLE)) --quiet
	@echo "submission: $@"

# The head's settings as a file rewritten only when they change (make compares times):
# new FOLDS or TRAIN options re-train; the embeddings stay. (`+`: kept current under make -n too.)
$(RUN).settings: FORCE
	@+mkdir -p $(@D)
	@+echo '$(FOLDS) $(TRAIN)' | cmp -s - $@ || echo '$(FOLDS) $(TRAIN)' > $@
FORCE:
