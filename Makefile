# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUN    ?= runs/demo

.PHONY: install demo test test-all bench-baseline bench-speed bench-host bench-parts bench-soak bench-cvae bench-nets bench-m2 bench-sdgm bench-ood bench-categorical bench-vqvae bench-vaegan bench-hvae bench-hvae-500 bench-hvae-best bench-iwae bench-sentence bench-sentence-decoders bench-sentence-ddp beta-vae figures clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(PY) -m pyro_vae train --dataset mnist-10k --epochs 10 --out $(RUN) --overwrite

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ""

# Benchmarks print measured tables; see docs/ for the figures and what they mean.
bench-baseline: install
	$(PY) benchmarks/vae_baseline.py

bench-speed: install
	$(PY) benchmarks/speed.py

# per-step host cost where compute is negligible: plain PyTorch, fused, compiled (docs/speed.md)
bench-host: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/host_cost.py --backend inductor

bench-parts: install
	$(PY) benchmarks/priors_guides.py

bench-soak: install
	$(PY) benchmarks/soak.py

# beta-VAE sweep on mnist-10k: trade-off figure and latent traversals (docs/variants.md)
beta-vae: install
	OMP_NUM_THREADS=1 $(PY) examples/beta_vae.py --out runs/beta-vae

bench-cvae: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/cvae.py

# FID and precision/recall of the default VAE's samples against the floor of real images,
# in a classifier's features (docs/variants.md); under 1 min on one core, +1.5 min once
.PHONY: bench-quality
bench-quality: install
	OMP_NUM_THREADS=1 $(PY) -m pyro_vae train --dataset mnist-10k --epochs 10 --out runs/quality --overwrite --quiet
	OMP_NUM_THREADS=1 $(PY) -m pyro_vae evaluate runs/quality --sample-quality

# conv against MLP networks, IWAE NLL at K=1000 (docs/networks.md)
bench-nets: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/nets.py

# 100 labels, 5 label draws; about 26 min (mnist-10k) and 40 min (fashion-mnist) on one core
bench-m2: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/m2.py --dataset mnist-10k
	OMP_NUM_THREADS=1 $(PY) benchmarks/m2.py --dataset fashion-mnist --methods labels-only m2 --m2-epochs 3
	OMP_NUM_THREADS=1 $(PY) benchmarks/m2.py --dataset fashion-mnist --methods m1-labels-only m1+m2 \
		--m1-epochs 15 --m1m2-epochs 10

# the SDGM with stochastic weight averaging over epochs 61-100, five label draws, beside
# labels alone, M2 and M1+M2 (docs/adgm.md); about 3.5 h on one core
bench-sdgm: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/m2.py --methods sdgm labels-only m2 m1+m2 --adgm-epochs 100 \
		--adgm-weight-average swa --adgm-average-start 60 --cache runs/bench-m2-swa

# the six figures of the VAE story and their numbers (docs/figures.md); the small runs it
# trains are kept in runs/figures/runs and reused: a few minutes on one core the first time
figures: install
	OMP_NUM_THREADS=1 $(PY) -m pyro_vae figures --out runs/figures

# anomaly scores' AUROC: Fashion-MNIST against MNIST (3 seeds), each held-out digit, conv nets
# (docs/anomaly.md; needs `apt-get install dataset-fashion-mnist`; about 2 h on one core)
bench-ood: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/ood.py fashion --seeds 0 1 2
	OMP_NUM_THREADS=1 $(PY) benchmarks/ood.py heldout --epochs 20
	OMP_NUM_THREADS=1 $(PY) benchmarks/ood.py best --no-background
	OMP_NUM_THREADS=1 $(PY) benchmarks/ood.py hierarchical
	OMP_NUM_THREADS=1 $(PY) benchmarks/ood.py hierarchical --hvae-flags='--warmup linear --free-bits 4' \
		--out runs/bench/ood/hierarchical-fb.jsonl

# the categorical VAE's three estimators, discrete test -ELBO and IWAE NLL (docs/categorical.md);
# about 11 min on one shared core
bench-categorical: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/categorical.py

# VQ-VAE against a Gaussian conv VAE: reconstruction MSE, codebook usage, sample FID of the
# learnt and the uniform prior (docs/vqvae.md); about 15 min on one shared core
bench-vqvae: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/vqvae.py

# VAE-GAN against the plain VAE with the same conv networks: sample and reconstruction FID
# (docs/vaegan.md); mnist-10k, Fashion-MNIST (8,000 training images) and the coloured digits,
# 12 epochs each, two seeds (one for the coloured digits); about 1 h 30 on one core
bench-vaegan: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/vaegan.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/vaegan.py --data fashion-mnist --train-size 8000
	OMP_NUM_THREADS=1 $(PY) benchmarks/vaegan.py --data coloured-mnist-10k --seeds 0

# the two-level VAE against the single-level VAE and IAF + VampPrior: IW NLL at K=1000 on the
# 2,000 test digits of mnist-10k, train vs test NLL every 10 epochs (docs/hvae.md); 100 epochs
bench-hvae: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/hvae.py

# the long schedule: 500 epochs, cosine learning rate, the references at the same schedule;
# the best row trains on the importance-weighted bound (docs/hvae.md); hours on one core
bench-hvae-500: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/hvae.py --epochs 500 --lr-schedule cosine --curve-every 50 \
		--rows vae,iaf-vamp,hvae-warmup-batchnorm,hvae-warmup-batchnorm-iwae5,hvae-warmup-batchnorm-iwae10 \
		--out runs/bench/hvae-500

# the best two-level row: the long schedule with decoupled weight decay (AdamW, 0.05), and the
# single-level references trained the same way (docs/hvae.md); about 1.5 h on one core
bench-hvae-best: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/hvae.py --epochs 500 --lr-schedule cosine --curve-every 50 \
		--optimizer adamw --weight-decay 0.05 --rows vae,iaf-vamp,hvae-warmup-batchnorm-iwae10 \
		--out runs/bench/hvae-500-adamw

# training on the importance-weighted bound: time per epoch of --elbo IWAE (one replicated
# pass) against Pyro's RenyiELBO, particle by particle and vectorised (docs/priors_guides.md)
bench-iwae: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/iwae_step.py

# the sentence VAE on the Penn Treebank (docs/text.md): the ablation on 5,000 training
# sentences for 5 epochs (about 80 min on one shared core); the 256-unit language model and
# best row on all 42,068 for 25 epochs; the 512-unit language model for 25 epochs (about
# 1.5 h on one core), then its best row and collapsed baseline for 16 (about 1.5 h each, and
# 1.5 h each for K = 500 on all 3,761 test sentences); the commands can run side by side
bench-sentence: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/sentence.py --embed-std 1 --train-size 5000 --epochs 5 --warmup-epochs 3 \
		--dropout 0.5 --iw-samples 100 --test-size 200 --out runs/bench-sentence-ablation
	OMP_NUM_THREADS=1 $(PY) benchmarks/sentence.py --embed-std 1 --rows lm warmup-fb --epochs 25 --warmup-epochs 4 \
		--dropout 0.5 --weight-average swa --average-start 13 --iw-samples 500 --test-size 500
	OMP_NUM_THREADS=1 $(PY) benchmarks/sentence.py --rows lm --epochs 25 --warmup-epochs 4 \
		--dropout 0.5 --hidden-size 512 --softmax adaptive --weight-average swa --average-start 13 \
		--iw-samples 500
	OMP_NUM_THREADS=1 $(PY) benchmarks/sentence.py --rows warmup-fb vae --epochs 16 --warmup-epochs 4 \
		--dropout 0.5 --hidden-size 512 --softmax adaptive --weight-average swa --average-start 13 \
		--iw-samples 500

bench-sentence-decoders: install
	for variant in --tie-embeddings "--softmax adaptive"; do \
		OMP_NUM_THREADS=1 $(PY) benchmarks/sentence.py --embed-std 1 --train-size 5000 --epochs 5 --warmup-epochs 3 \
			--dropout 0.5 --iw-samples 100 --test-size 200 --rows lm warmup-fb $$variant \
			--out runs/bench-sentence-ablation || exit 1; done
	OMP_NUM_THREADS=1 $(PY) benchmarks/sentence_softmax.py --sentences 1500 --repeats 3

bench-sentence-ddp: install
	$(PY) benchmarks/sentence_ddp.py --processes 2 --train-size 3000 --epochs 2

clean:
	rm -rf runs .pytest_cache build dist *.egg-info

# The documentation site (docs/): Sphinx with warnings as errors; open docs/_build/html/index.html
.PHONY: docs graphs

$(VENV)/.installed-docs: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $@

docs: $(VENV)/.installed-docs
	OMP_NUM_THREADS=1 $(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

# render_model graphs of every registered model into docs/graphs/ (needs Graphviz's dot)
graphs: $(VENV)/.installed-docs
	OMP_NUM_THREADS=1 $(PY) docs/_ext/model_graphs.py docs/graphs
