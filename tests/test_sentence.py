"""The sentence VAE: text data, masking, bounds, anti-collapse terms, decoding, CLI."""

import json
import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
import pyro.distributions as dist
from pyro.infer import Predictive, TraceMeanField_ELBO

from pyro_vae.cli import main
from pyro_vae.evaluate import elbo_terms, iw_log_likelihood
from pyro_vae.models import MODELS, SentenceVAE
from pyro_vae.models.sentence import trim
from pyro_vae.text import (Vocabulary, beam_search, bucket_batches, greedy, load_text,
                           sample, toy_sentences, word_dropout)
from pyro_vae.text.decoding import nucleus, repeated_ngrams
from pyro_vae.text.distribution import SentenceDistribution
from pyro_vae.text.nets import SOFTMAXES, SentenceDecoder, SentenceEncoder, default_cutoffs
from pyro_vae.text.vocab import lengths


@pytest.fixture(scope="module")
def toy():
    return load_text("toy", seed=0)


def tiny(vocab, **options):
    return SentenceVAE(vocab, z_dim=4, embed_dim=8, hidden_size=16, **options)


# ------------------------------------------------------------------- data
def test_vocabulary_specials_and_round_trip():
    vocab = Vocabulary.build([["a", "b", "a"], ["c"]], max_size=6)
    assert vocab.words == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"]
    x = vocab.tensor([["a", "c"], ["b", "a", "b"]])
    assert x.tolist() == [[4, 1, 3, 0], [5, 4, 5, 3]]
    assert vocab.decode(x[1]) == "b a b" and lengths(x).tolist() == [3, 4]


def test_text_file_split_is_seeded_and_vocab_from_training(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("\n".join(" ".join(s) for s in toy_sentences(50)) + "\n\nonly here\n")
    a, b = load_text(str(path), seed=1), load_text(str(path), seed=1)
    assert torch.equal(a.x_test, b.x_test) and len(a.x_train) + len(a.x_test) == 51
    assert a.test_fraction == 0.2 and a.x_train.dtype == torch.int64
    held = set(a.vocab.words)
    assert all(w in held or w == "only" or w == "here" for s in toy_sentences(50) for w in s)


def test_buckets_cover_every_sentence_once_and_trim_padding(toy):
    batches = bucket_batches(32)((toy.x_train,), torch.Generator().manual_seed(0))
    seen = torch.cat(list(batches.indices)).sort().values
    assert torch.equal(seen, torch.arange(len(toy.x_train)))
    for (x,) in batches:
        assert lengths(x).max() == x.shape[1]


def test_word_dropout_rate_and_identity():
    x = torch.randint(4, 50, (200, 30))
    assert word_dropout(x, 0.0) is x
    torch.manual_seed(0)
    out = word_dropout(x, 0.25)
    dropped = (out[:, 1:] == Vocabulary.unk).float().mean().item()
    assert abs(dropped - 0.25) < 0.02  # 5,800 Bernoulli draws: sd 0.006
    assert (out[:, 0] == x[:, 0]).all()
    assert ((out == x) | (out == Vocabulary.unk)).all()


# ---------------------------------------------------------- the masked site
def _padded(x, extra):
    return torch.cat([x, torch.zeros(len(x), extra, dtype=x.dtype)], 1)


@pytest.mark.parametrize("softmax", SOFTMAXES)
def test_padding_changes_no_loss(toy, softmax):
    model = tiny(toy.vocab, softmax=softmax).eval()
    x = toy.x_test[:16]
    losses = []
    for extra in (0, 3, 11):
        pyro.set_rng_seed(1)
        losses.append(TraceMeanField_ELBO().loss(model.model, model.guide, _padded(x, extra)))
    assert losses[0] == pytest.approx(losses[1], abs=1e-4) == pytest.approx(losses[2], abs=1e-4)


@pytest.mark.parametrize("softmax", SOFTMAXES)
def test_site_log_prob_is_the_sum_over_real_tokens(toy, softmax):
    model = tiny(toy.vocab, softmax=softmax).eval()
    x = _padded(toy.x_test[:5], 4)
    trace = poutine.trace(model.model).get_trace(x)
    site, z = trace.nodes["x"], trace.nodes["z"]["value"]
    by_hand = torch.zeros(len(x))
    with torch.no_grad():
        for n in range(len(x)):
            previous = Vocabulary.bos
            state = None
            for t in range(int(lengths(x[n:n + 1]))):
                logits, state = model.decoder(torch.tensor([[previous]]), z[n:n + 1], state)
                by_hand[n] += torch.log_softmax(logits[0, -1], -1)[x[n, t]]
                previous = int(x[n, t])
        assert torch.allclose(site["fn"].log_prob(site["value"]), by_hand, atol=1e-4)


def test_iw_bound_is_above_the_elbo(toy):
    torch.manual_seed(0)
    model = tiny(toy.vocab).eval()
    with torch.no_grad():  # q(z | x) away from the posterior: a gap well above the noise
        model.encoder.out.bias[:4] += 1.5
    x = toy.x_test[:8]
    elbo = -elbo_terms(model.model, model.guide, x.repeat(50, 1))["test_loss"]
    iw = iw_log_likelihood(model.model, model.guide, x, num_samples=50).mean().item()
    assert iw > elbo + 1.0


def test_replicated_sentences_are_encoded_once(toy):
    model = tiny(toy.vocab).eval()
    x = toy.x_test[:6]
    replicas = x[torch.arange(6).repeat(50)]  # how iw_log_likelihood replicates items
    seen = []
    model.encoder.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    with torch.no_grad():
        q = model.posterior(replicas)
        once = model.posterior(x)
    assert sum(seen) == 2 * len(torch.unique(x, dim=0))
    torch.testing.assert_close(q.base_dist.loc, once.base_dist.loc.repeat(50, 1))
    torch.testing.assert_close(q.base_dist.scale, once.base_dist.scale.repeat(50, 1))


@pytest.mark.parametrize("softmax", SOFTMAXES)
def test_iw_estimate_is_exact_when_the_decoder_ignores_z(toy, softmax):
    """With ``language_model`` the decoder reads no z and q = p, so every weight is
    p(x): the estimate equals the exact log p(x), the sum of the tokens' log-probs."""
    model = tiny(toy.vocab, language_model=True, softmax=softmax).eval()
    x = toy.x_test[:6]
    iw = iw_log_likelihood(model.model, model.guide, x, num_samples=7)
    site = poutine.trace(model.model).get_trace(x).nodes["x"]
    exact = site["fn"].log_prob(site["value"])
    assert torch.allclose(iw, exact, atol=1e-4)
    assert elbo_terms(model.model, model.guide, x)["kl"] == 0


class DiscreteCodeSentences:
    """A toy sentence model with a discrete code: ``k ~ Categorical(pi)`` over ``K``
    classes, ``x ~ SentenceDistribution(decoder, onehot(k))`` on a vocabulary of 7.
    Its marginal ``log p(x) = logsumexp_k [log pi_k + log p(x | k)]`` is exact."""

    def __init__(self, classes=3, softmax="full"):
        torch.manual_seed(0)
        self.classes, self.logits = classes, 2 * torch.randn(classes)
        self.decoder = SentenceDecoder(7, classes, embed_dim=4, hidden_size=6,
                                       softmax=softmax).eval()

    def joint(self, x):
        """``log p(x, k)`` for every class: ``[B, K]``."""
        rows = [self.likelihood(torch.full((len(x),), k), x.shape[1]).log_prob(x)
                for k in range(self.classes)]
        return torch.log_softmax(self.logits, 0) + torch.stack(rows, -1)

    def likelihood(self, k, length):
        code = torch.nn.functional.one_hot(k, self.classes).float()
        return SentenceDistribution(self.decoder, code, length)

    def model(self, x):
        with pyro.plate("data", len(x)):
            k = pyro.sample("k", dist.Categorical(logits=self.logits.expand(len(x), -1)))
            pyro.sample("x", self.likelihood(k, x.shape[1]), obs=x)

    def posterior_guide(self, x):
        """q(k | x) = p(k | x), computed exactly."""
        with pyro.plate("data", len(x)):
            pyro.sample("k", dist.Categorical(logits=self.joint(x)))

    def uniform_guide(self, x):
        with pyro.plate("data", len(x)):
            pyro.sample("k", dist.Categorical(logits=torch.zeros(len(x), self.classes)))


@torch.no_grad()
@pytest.mark.parametrize("softmax", SOFTMAXES)
def test_iw_estimate_equals_the_exact_marginal_of_a_discrete_code(softmax):
    """With q(k | x) the exact posterior every importance weight is p(x), so any K gives
    the exact marginal; with a uniform q, K = 3,000 draws give it to a few hundredths."""
    toy_model = DiscreteCodeSentences(softmax=softmax)
    x = torch.tensor([[4, 5, 6, 3, 0], [6, 3, 0, 0, 0], [5, 5, 4, 4, 3]])  # 3 is <eos>
    exact = torch.logsumexp(toy_model.joint(x), -1)
    assert (exact < 0).all() and exact.std() > 0.1
    pyro.set_rng_seed(0)
    posterior = iw_log_likelihood(toy_model.model, toy_model.posterior_guide, x, num_samples=2)
    assert torch.allclose(posterior, exact, atol=1e-5)
    uniform = iw_log_likelihood(toy_model.model, toy_model.uniform_guide, x, num_samples=3000)
    assert torch.allclose(uniform, exact, atol=0.05)
    single = iw_log_likelihood(toy_model.model, toy_model.uniform_guide, x, num_samples=1)
    assert not torch.allclose(single, exact, atol=0.05)  # the check above can fail


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_one_way_encoder_reads_each_sentence_to_its_own_end(cell):
    # the padded batch's output at each sentence's last token is the sentence's own,
    # read alone; more padding changes nothing
    torch.manual_seed(0)
    encoder = SentenceEncoder(12, 6, embed_dim=5, hidden_size=7, cell=cell)
    x = torch.randint(4, 12, (4, 9))
    for row, n in enumerate((9, 5, 1, 3)):
        x[row, n - 1], x[row, n:] = Vocabulary.eos, Vocabulary.pad
    alone = torch.cat([encoder(x[i:i + 1, :n]) for i, n in enumerate((9, 5, 1, 3))])
    torch.testing.assert_close(encoder(x), alone)
    longer = torch.cat([x, torch.full((4, 3), Vocabulary.pad)], 1)
    torch.testing.assert_close(encoder(longer), alone)


def test_embeddings_start_at_the_given_scale_with_a_zero_pad_row():
    from pyro_vae.text.nets import EMBED_STD, embedding

    for std in (EMBED_STD, 1.0):
        weight = embedding(5000, 64, std).weight
        assert (weight[Vocabulary.pad] == 0).all()
        assert abs(weight[1:].std().item() / std - 1) < 0.01  # 320k draws
    model = SentenceVAE(100, z_dim=4, embed_dim=8, hidden_size=16, embed_std=0.5)
    assert 0.4 < model.encoder.embed.weight[1:].std().item() < 0.6
    assert 0.4 < model.decoder.embed.weight[1:].std().item() < 0.6
    with pytest.raises(ValueError, match="embed_std"):
        embedding(10, 4, 0.0)


def test_decoder_dropout_acts_in_training_steps_only(toy):
    torch.manual_seed(0)
    plain = SentenceDecoder(len(toy.vocab), 4, embed_dim=8, hidden_size=16)
    dropped = SentenceDecoder(len(toy.vocab), 4, embed_dim=8, hidden_size=16, dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    inputs, z = toy.x_test[:4], torch.randn(4, 4)
    with torch.no_grad():  # no gradients: an evaluation, no dropout
        assert torch.equal(dropped(inputs, z)[0], plain(inputs, z)[0])
    dropped.eval()
    assert torch.equal(dropped(inputs, z)[0], plain(inputs, z)[0])
    dropped.train()
    assert not torch.equal(dropped(inputs, z)[0], plain(inputs, z)[0])
    with pytest.raises(ValueError, match="dropout"):
        SentenceDecoder(10, 4, dropout=1.0)


@pytest.mark.parametrize("hidden_size", [8, 16])
def test_tied_embeddings_share_one_matrix_and_train_through_both_uses(toy, hidden_size):
    torch.manual_seed(0)
    decoder = SentenceDecoder(len(toy.vocab), 4, embed_dim=8, hidden_size=hidden_size,
                              tie_embeddings=True)
    untied = SentenceDecoder(len(toy.vocab), 4, embed_dim=8, hidden_size=hidden_size)
    assert decoder.out.weight is decoder.embed.weight
    # at the softmax layer's scale, not N(0, 1): logits start small
    assert decoder.embed.weight.abs().max() <= 8 ** -0.5
    assert (decoder.embed.weight[Vocabulary.pad] == 0).all()
    assert (decoder.project is None) == (hidden_size == 8)
    saved = sum(p.numel() for p in untied.parameters()) - sum(
        p.numel() for p in decoder.parameters())
    assert saved == len(toy.vocab) * hidden_size - (0 if hidden_size == 8 else 8 * hidden_size)
    inputs, z = toy.x_test[:4], torch.randn(4, 4)
    logits, _ = decoder(inputs, z)
    assert logits.shape == (*inputs.shape, len(toy.vocab))
    logits.logsumexp(-1).sum().backward()
    unread = sorted(set(range(4, len(toy.vocab))) - set(inputs.flatten().tolist()))
    # a word no input reads gets its gradient through the softmax layer alone
    assert decoder.embed.weight.grad[unread[0]].abs().sum() > 0
    model = tiny(toy.vocab, tie_embeddings=True)
    assert model.decoder.out.weight is model.decoder.embed.weight


def test_adaptive_softmax_is_a_distribution_over_the_vocabulary(toy):
    torch.manual_seed(0)
    v = len(toy.vocab)
    decoder = SentenceDecoder(v, 4, embed_dim=8, hidden_size=16, softmax="adaptive",
                              cutoffs=(8, 20))
    x = toy.x_test[:6]
    h, _ = decoder.hidden(torch.cat([torch.full_like(x[:, :1], Vocabulary.bos), x[:, :-1]],
                                    1), torch.randn(6, 4))
    log_p = decoder.logits(h)
    assert log_p.shape == (*x.shape, v)
    assert torch.allclose(log_p.logsumexp(-1), torch.zeros(x.shape), atol=1e-5)
    assert (log_p[..., [Vocabulary.pad, Vocabulary.bos]] == -math.inf).all()
    # scoring the targets alone equals reading them off the full distribution
    by_row = log_p.gather(-1, x.unsqueeze(-1)).squeeze(-1).masked_fill(x == 0, 0.0)
    assert torch.allclose(decoder.score(h, x), by_row, atol=1e-5)
    assert (decoder.score(h, x)[x == 0] == 0).all()
    # a rare word's probability trains its cluster's layers, a frequent one's only the head
    frequent, rare = torch.tensor([[5]]), torch.tensor([[v - 2]])
    decoder.score(h[:1, :1], rare).sum().backward()
    assert decoder.out.tail[1][1].weight.grad.abs().sum() > 0
    decoder.zero_grad()
    decoder.score(h[:1, :1].detach(), frequent).sum().backward()
    assert decoder.out.tail[1][1].weight.grad is None or \
        decoder.out.tail[1][1].weight.grad.abs().sum() == 0
    assert default_cutoffs(10002) == (1000, 4000) and default_cutoffs(7) == (5,)
    for bad in [(3,), (20, 8), (8, v - 1)]:
        with pytest.raises(ValueError, match="cutoffs"):
            SentenceDecoder(v, 4, softmax="adaptive", cutoffs=bad)
    with pytest.raises(ValueError, match="tie_embeddings"):
        SentenceDecoder(v, 4, softmax="adaptive", tie_embeddings=True)
    with pytest.raises(ValueError, match="softmax"):
        SentenceDecoder(v, 4, softmax="sampled")
    with pytest.raises(ValueError, match="cutoffs"):
        SentenceDecoder(v, 4, cutoffs=(8,))


def test_predictive_draws_sentences(toy):
    model = tiny(toy.vocab, max_len=7)
    draws = Predictive(model.model, num_samples=2)(num=3)
    assert draws["x"].shape == (2, 3, 7) and draws["z"].shape == (2, 3, 4)


# ------------------------------------------------------------- free bits
@pytest.mark.parametrize("nats, moves", [(100.0, False), (0.0, True)])
def test_free_bits_through_the_elbo(toy, nats, moves):
    """With a decoder that ignores z only the KL reaches the encoder: below lambda nats
    per dimension its gradient is exactly zero under TraceMeanField_ELBO."""
    model = tiny(toy.vocab, z_every_step=False, free_bits=nats)
    torch.nn.init.zeros_(model.decoder.init.weight)
    torch.nn.init.zeros_(model.decoder.init.bias)
    loss = TraceMeanField_ELBO().differentiable_loss(model.model, model.guide, toy.x_train[:16])
    grads = torch.autograd.grad(loss, list(model.encoder.parameters()), allow_unused=True)
    moved = any(g is not None and g.abs().max() > 0 for g in grads)
    assert moved == moves


def test_free_bits_factor_reaches_the_loss(toy):
    x = toy.x_train[:32]
    model = tiny(toy.vocab, free_bits=2.0)
    pyro.set_rng_seed(0)
    with_factor = TraceMeanField_ELBO().loss(model.model, model.guide, x)
    model.free_bits = 0.0
    pyro.set_rng_seed(0)
    without = TraceMeanField_ELBO().loss(model.model, model.guide, x)
    # an untrained encoder's KL is far below 2 nats in each of 4 dims: the loss gains
    # about sum_d (2 - KL_d) per sentence
    assert 0 < (with_factor - without) / len(x) < 8


# ------------------------------------------------------ aggressive training
def test_aggressive_steps_move_the_encoder_only(toy):
    from pyro_vae.models.sentence import AggressivePhase

    model = tiny(toy.vocab, aggressive_steps=2)
    step = model.extra_steps(lambda params: torch.optim.Adam(params, lr=1e-2))["encoder"]
    encoder = [p.detach().clone() for p in model.encoder.parameters()]
    decoder = [p.detach().clone() for p in model.decoder.parameters()]
    loss = step(toy.x_train[:16])
    assert math.isfinite(loss) and loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(encoder, model.encoder.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(decoder, model.decoder.parameters()))
    assert all(p.grad is None for p in model.decoder.parameters())
    AggressivePhase(model, 1).on_epoch_start(None, 2)
    assert step(toy.x_train[:16]) == 0.0


# --------------------------------------------------------------- decoding
@pytest.mark.parametrize("softmax", SOFTMAXES)
def test_greedy_is_deterministic_and_beam_of_one_is_greedy(toy, softmax):
    model = tiny(toy.vocab, softmax=softmax).eval()
    z = torch.randn(5, 4)
    first, again = greedy(model.decoder, z, 12), greedy(model.decoder, z, 12)
    assert torch.equal(first, again)
    assert torch.equal(trim(beam_search(model.decoder, z, width=1, max_len=12)), trim(first))


def test_repeated_ngrams_marks_the_words_that_would_repeat_one():
    history = torch.tensor([[5, 6, 7, 5, 6], [4, 4, 4, 4, 4]])
    marked = lambda n: [row.nonzero().squeeze(1).tolist() for row in repeated_ngrams(history, n, 9)]
    assert marked(0) == [[], []]
    assert marked(1) == [[5, 6, 7], [4]]
    assert marked(2) == [[7], [4]]  # 7 followed the earlier "6"
    assert marked(3) == [[7], [4]]  # 7 followed the earlier "5 6"
    assert marked(6) == [[], []]  # no 6-gram yet
    ended = repeated_ngrams(torch.tensor([[Vocabulary.eos, 5]]), 1, 9)
    assert ended[0].nonzero().squeeze(1).tolist() == [5]  # a sentence can always end


def _ngrams(row, n):
    words = [w for w in row.tolist() if w > Vocabulary.eos]
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def test_no_repeat_ngram_decoding_never_repeats_one(toy):
    model = tiny(toy.vocab).eval()
    with torch.no_grad():  # a decoder that loops: one word far above the rest at every step
        model.decoder.out.bias[toy.vocab.encode(["the"])[0]] += 50.0
    z = torch.randn(4, 4)
    loops = greedy(model.decoder, z, 12)
    assert any(len(set(_ngrams(r, 2))) < len(_ngrams(r, 2)) for r in loops)
    torch.manual_seed(0)
    for out in (greedy(model.decoder, z, 12, no_repeat_ngram=2),
                sample(model.decoder, z, 12, no_repeat_ngram=2),
                beam_search(model.decoder, z, width=3, max_len=12, no_repeat_ngram=2)):
        for row in out:
            assert len(set(_ngrams(row, 2))) == len(_ngrams(row, 2)) > 0
    with pytest.raises(ValueError, match="no_repeat_ngram"):
        greedy(model.decoder, z, 12, no_repeat_ngram=-1)


def test_nucleus_keeps_the_fewest_words_that_reach_top_p():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    kept = lambda p: torch.isfinite(nucleus(logits, p)).nonzero().squeeze(1).tolist()
    assert kept(0.01) == [0] and kept(0.75) == [0, 1] and kept(0.85) == [0, 1, 2]
    assert kept(1.0) == [0, 1, 2, 3]
    assert torch.equal(nucleus(logits, 0.75)[:2], logits[:2])


def test_sampling_from_a_tiny_nucleus_is_greedy(toy):
    model = tiny(toy.vocab).eval()
    z = torch.randn(6, 4)
    drawn = sample(model.decoder, z, 12, top_p=1e-6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn, greedy(model.decoder, z, 12))
    with pytest.raises(ValueError, match="top_p"):
        sample(model.decoder, z, 12, top_p=0.0)


def test_sentences_print_as_words(toy):
    model = tiny(toy.vocab).eval()
    text = model.sentences(toy.x_test[:2])
    assert text[0] == " ".join(toy.vocab.words[i] for i in toy.x_test[0] if i > 3)
    assert torch.equal(model.tensor(text), toy.x_test[:2, :model.tensor(text).shape[1]])


def test_bad_data_names_the_problem(toy):
    model = tiny(toy.vocab)
    with pytest.raises(TypeError, match="train data: expected int64"):
        model.prepare_data(torch.rand(3, 4), "train data")
    with pytest.raises(ValueError, match="indices in"):
        model.check_data(torch.full((2, 3), 999), "data")
    with pytest.raises(ValueError, match="free_bits"):
        tiny(toy.vocab, free_bits=-1.0)


# -------------------------------------------------------------------- CLI
TINY = ["--model", "sentence", "--epochs", "2", "--z-dim", "4", "--embed-dim", "16",
        "--hidden-size", "16", "--batch-size", "64", "--quiet", "--threads", "1",
        "--word-dropout", "0.2", "--free-bits", "0.1", "--warmup", "linear",
        "--warmup-epochs", "2", "--aggressive-steps", "1", "--aggressive-epochs", "1"]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sentence")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(" ".join(s) for s in toy_sentences(300)) + "\n")
    out = folder / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), *TINY]) == 0
    return out


def test_cli_train_writes_a_text_run(text_run):
    names = {p.name for p in text_run.iterdir()}
    assert {"config.json", "checkpoint.pt", "vocab.txt", "samples.txt", "curves.png"} <= names
    assert "samples.png" not in names
    config = json.loads((text_run / "config.json").read_text())
    assert config["model"] == "sentence" and config["free_bits"] == 0.1


def test_cli_evaluate_reports_text_metrics(text_run, capsys):
    assert main(["evaluate", str(text_run), "--json", "--iw-samples", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"nll", "ppl", "ppl_bound", "kl", "mutual_information", "active_units",
            "tokens_per_sentence"} <= set(result)
    assert "bits_per_dim" not in result
    assert result["ppl"] == pytest.approx(
        math.exp(result["nll"] / result["tokens_per_sentence"]), rel=1e-6)


@pytest.mark.parametrize("flags", [[], ["--decode", "sample", "--temperature", "0.5"],
                                   ["--decode", "beam", "--beam-width", "3"],
                                   ["--decode", "sample", "--top-p", "0.9",
                                    "--no-repeat-ngram", "2"]])
def test_cli_sample_prints_sentences(text_run, flags, capsys):
    assert main(["sample", str(text_run), "--num", "3", *flags]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3


def test_cli_reconstruct_and_interpolate(text_run, tmp_path, capsys):
    assert main(["reconstruct", str(text_run), "--num", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[1].startswith("> ")
    out = tmp_path / "path.txt"
    assert main(["interpolate", str(text_run), "--from", "the dog sees an apple .",
                 "--to", "a cat likes the river today .", "--steps", "5", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 5


def test_cli_adaptive_softmax_trains_evaluates_and_samples(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "toy", "--out", str(out), "--softmax", "adaptive",
                 "--cutoffs", "10,30", *TINY[:-4]]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["softmax"] == "adaptive" and config["cutoffs"] == [10, 30]
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json", "--iw-samples", "5"]) == 0
    assert math.isfinite(json.loads(capsys.readouterr().out)["nll"])
    assert main(["sample", str(out), "--num", "3", "--decode", "beam"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_a_moved_run_keeps_its_vocabulary(text_run, tmp_path, capsys):
    import shutil

    from pyro_vae.runs import Run

    moved = tmp_path / "elsewhere"
    shutil.copytree(text_run, moved)
    (text_run / "vocab.txt").rename(text_run / "vocab.bak")
    try:
        run = Run.load(moved)
        assert run.model.vocab.words == Run.load(moved).model.vocab.words
        assert main(["sample", str(moved), "--num", "2"]) == 0
        words = set(" ".join(capsys.readouterr().out.splitlines()).split())
        assert words and words <= set(run.model.vocab.words)
    finally:
        (text_run / "vocab.bak").rename(text_run / "vocab.txt")


@pytest.mark.parametrize("args, match", [
    (["train", "--model", "sentence", "--data", "{empty}"], "holds no sentences"),
    (["train", "--model", "sentence", "--data", "toy", "--no-such-flag", "1"], "no such option"),
    (["train", "--model", "sentence", "--data", "toy", "--image-size", "8"],
     "image_size: applies to images"),
    (["train", "--model", "sentence", "--data", "toy", "--softmax", "adaptive",
      "--tie-embeddings", "true"], "tie_embeddings: the adaptive softmax"),
    (["train", "--model", "sentence", "--data", "toy", "--softmax", "adaptive",
      "--cutoffs", "2"], "cutoffs: expected increasing word ranks"),
])
def test_bad_input_is_one_line_exit_2(args, match, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    args = [a.replace("{empty}", str(empty)) for a in args] + ["--out", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err


@pytest.mark.parametrize("command, flags, match", [
    ("sample", ["--decode", "sample", "--temperature", "0"], "temperature: expected a positive"),
    ("sample", ["--decode", "beam", "--beam-width", "0"], "width: expected a positive integer"),
    ("reconstruct", ["--decode", "sample", "--top-p", "1.5"], "top_p: expected a probability"),
    ("reconstruct", ["--no-repeat-ngram", "-1"], "no_repeat_ngram: expected a non-negative"),
])
def test_bad_decoding_flags_are_named_before_the_run_is_read(text_run, command, flags, match,
                                                             capsys):
    assert main([command, str(text_run), "--num", "2", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err


def test_decoding_options_are_checked_once_for_every_decoder(toy):
    from pyro_vae.text.decoding import check_options

    check_options(temperature=0.5, width=3, top_p=0.9, no_repeat_ngram=2)
    for bad, match in [({"temperature": -1.0}, "temperature"), ({"width": 2.5}, "width"),
                       ({"width": True}, "width"), ({"width": float("nan")}, "width"),
                       ({"top_p": 0.0}, "top_p"), ({"top_p": float("nan")}, "top_p"),
                       ({"no_repeat_ngram": 1.5}, "no_repeat_ngram")]:
        with pytest.raises(ValueError, match=match):
            check_options(**bad)
    model = tiny(toy.vocab).eval()
    z = torch.randn(2, 4)
    with pytest.raises(ValueError, match="width"):
        beam_search(model.decoder, z, width=0)
    with pytest.raises(ValueError, match="temperature"):
        sample(model.decoder, z, 12, temperature=0.0)


def test_registered():
    assert MODELS["sentence"] is SentenceVAE


@pytest.mark.parametrize("softmax", SOFTMAXES)
def test_example_script(monkeypatch, capsys, softmax):
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "sentence_vae.py"
    assert script.name == "sentence_vae.py"
    monkeypatch.setattr(sys, "argv", ["sentence_vae.py", "--epochs", "1", "--train-size", "100",
                                      "--test-size", "10", "--iw-samples", "3", "--z-dim", "3",
                                      "--embed-dim", "8", "--hidden-size", "16",
                                      "--softmax", softmax])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "NLL" in out and "homotopy" in out
