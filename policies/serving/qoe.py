"""Text-streaming QoE (after Andes), shared by the simulator, the policies and the real backend.

A request expects its first token `ttft_exp_s` after arrival and then `tds_exp` tokens per second
(reading ~4.8 tok/s, listening ~3.3 tok/s). The user digests tokens no faster than `tds_exp`:
tokens delivered early wait in the client buffer. Token k (1-based) is digested at

    d_k = max(a_k, d_{k-1} + 1/tds_exp)        (a_k: delivery time of token k)

and was expected at e_k = ttft_exp_s + (k-1)/tds_exp (times relative to arrival). The area lost
against the expected token-count curve is deficit = sum_k max(0, d_k - e_k) (token*seconds).
QoE compares the expected area E = L(L+1)/(2 tds_exp) (the expected curve until it reaches the
length L) with what was lost:

    QoE = E / (E + deficit)

For a stream that starts late but then keeps pace this equals the Andes paper's area ratio
(actual area / expected area over the request's life); unlike a ratio over the actual lifetime,
it can never drop when any token arrives earlier. It is 1 exactly when every token is digested
no later than expected, lies in (0, 1], and extra speed adds nothing. This is `metric="deficit"`.

`metric="andes"` is the paper's definition exactly (Liu et al., "Andes: Defining and Enhancing
Quality-of-Experience in LLM-Based Text Streaming Services", arXiv:2404.16283, sec. 3, Fig. 4):
QoE = S_actual / S_expected, the area under the user's digested-token curve A(t) over the area
under the expected curve T(t) = min(tokens expected by t, L), both from the request's arrival
to the response's end. Here the end is T_end = max(d_L, e_L) + 1/tds_exp (the last token is
read for one token period; this keeps one-token responses defined and makes an on-time stream's
expected area exactly E above), so with step curves

    S_actual = sum_k (T_end - d_k),   S_expected = sum_k (T_end - e_k),   QoE = min(1, S_a/S_e)

(the min: a first token earlier than TTFT_exp lifts A above T, and extra speed adds nothing).
The two metrics agree for on-time streams and are close for late or bursty ones, but they
differ for a stream that is uniformly slow: at half the expected pace "deficit" gives
(L+1)/(2L) ~ 0.505 (L = 100) while "andes" gives ~2/3, because the paper's window grows with
the response, and the growth (where T(t) = L and A(t) ~ L) counts in the stream's favour.
The paper's metric is therefore NOT monotone in delivery times: delaying the *last* token of a
slow stream (QoE below (L-1)/L) widens the window by a slice whose own ratio is (L-1)/L and so
raises its QoE (tests/policies/serving/test_qoe.py::test_andes_metric_not_monotone).
"""

from __future__ import annotations

import numpy as np

READING_TDS_TOK_S = 4.8
LISTENING_TDS_TOK_S = 3.3
DEFAULT_TTFT_EXP_S = 1.0
LATE_TOLERANCE_S = 1e-9  # lateness below this is float round-off, not a late token
# QoETracker.deliver_many joins tokens to one segment when their gaps are shorter than the
# reading step by this much: far above the round-off of times (s) in any simulated span.
SEGMENT_MARGIN_S = 1e-6
QOE_METRICS = ("andes", "deficit")
DEFAULT_QOE_METRIC = "andes"  # the paper's area ratio (arXiv:2404.16283, sec. 3)


def _late(d, e):
    late = d - e
    return np.where(late > LATE_TOLERANCE_S, late, 0.0)


def expected_area(length_tokens, tds_exp_tok_s):
    """Area (token*s) under the expected curve until it reaches the response length."""
    L = np.asarray(length_tokens, dtype=float)
    return L * (L + 1.0) / (2.0 * np.asarray(tds_exp_tok_s, dtype=float))


def qoe_from_deficit(deficit, length_tokens, tds_exp_tok_s):
    """QoE = E / (E + deficit); vectorised."""
    e = expected_area(length_tokens, tds_exp_tok_s)
    d = np.asarray(deficit, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(e + d > 0, e / (e + d), 1.0)


def andes_qoe(digest_sum_s, digest_last_s, delivered, length_tokens, ttft_exp_s, tds_exp_tok_s,
              now_rel_s=None):
    """The paper's area-ratio QoE from sufficient statistics; vectorised.

    `digest_sum_s` is the sum of the digest times (relative to arrival) of the `delivered`
    tokens, `digest_last_s` the last one's. A finished response (`delivered == length`) ends at
    max(d_L, e_L) + 1/tds. An unfinished one (`now_rel_s` given: time since arrival when the run
    stopped) is scored over [0, max(now_rel_s, d_last) + 1/tds] against the expected curve of
    its full length, counting only the tokens it got.
    """
    k = np.asarray(delivered, dtype=float)
    L = np.asarray(length_tokens, dtype=float)
    ttft = np.asarray(ttft_exp_s, dtype=float)
    tds = np.asarray(tds_exp_tok_s, dtype=float)
    d_last = np.where(k > 0, np.asarray(digest_last_s, dtype=float), 0.0)
    step = 1.0 / tds
    e_last = ttft + (L - 1.0) * step
    if now_rel_s is None:
        t_end = np.maximum(d_last, e_last) + step
    else:
        t_end = np.maximum(np.asarray(now_rel_s, dtype=float), d_last) + step
    # expected tokens whose time e_k = ttft + (k-1)/tds falls before the end, at most L
    m = np.clip(np.floor((t_end - ttft) * tds + 1.0 - 1e-9), 0.0, L)
    s_exp = m * t_end - m * ttft - m * (m - 1.0) * step / 2.0
    s_act = k * t_end - np.asarray(digest_sum_s, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(s_exp > 0, s_act / s_exp, 1.0)
    return np.clip(q, 0.0, 1.0)


def _segment_sum(x0, n, step):
    """Sum of the digest times x0 + j*step, j < n, of segments (0 where n == 0)."""
    tot = n * x0 + step * (n * (n - 1) // 2)
    return np.where(n > 0, tot, 0.0)


def digest_times(delivery_s, tds_exp_tok_s: float) -> np.ndarray:
    """Digest time of each token given delivery times (sorted, relative to arrival)."""
    a = np.asarray(delivery_s, dtype=float)
    k = np.arange(a.size, dtype=float)
    step = 1.0 / tds_exp_tok_s
    # d_k = max_{j<=k} (a_j + (k - j) step) = k step + cummax(a_j - j step)
    return k * step + np.maximum.accumulate(a - k * step) if a.size else a


def check_metric(metric: str) -> str:
    if metric not in QOE_METRICS:
        raise ValueError(f"QoE metric must be one of {QOE_METRICS}, got {metric!r}")
    return metric


def qoe_of_stream(
    delivery_s,
    ttft_exp_s: float = DEFAULT_TTFT_EXP_S,
    tds_exp_tok_s: float = READING_TDS_TOK_S,
    metric: str = DEFAULT_QOE_METRIC,
) -> float:
    """QoE of one complete response from its token delivery times (seconds after arrival).

    `metric`: "andes" (the paper's area ratio, default) or "deficit" (E / (E + lost area))."""
    check_metric(metric)
    a = np.sort(np.asarray(delivery_s, dtype=float))
    if a.size == 0:
        return 0.0
    d = digest_times(a, tds_exp_tok_s)
    if metric == "andes":
        return float(andes_qoe(d.sum(), d[-1], a.size, a.size, ttft_exp_s, tds_exp_tok_s))
    e = ttft_exp_s + np.arange(a.size) / tds_exp_tok_s
    deficit = float(_late(d, e).sum())
    return float(qoe_from_deficit(deficit, a.size, tds_exp_tok_s))


class QoETracker:
    """Incremental QoE state for many requests, one token per request per delivery.

    Tokens delivered faster than the user reads them are digested back to back: token k of a
    *segment* (a run of tokens each arriving before the previous one is read) is digested at
    d = x0 + k/tds, where x0 is the digest time of the segment's first token, and all tokens of
    a segment are equally late (d - e is the same for each). The tracker therefore keeps, per
    request, the open segment (x0, its token count, its lateness) and the sums over closed
    segments; the digest times, their sum and the deficit follow from those. A new segment
    starts when a token arrives after the open segment's next digest time. The state of m
    tokens delivered faster than reading speed is then one integer addition per request
    (`deliver_many`), and equals m calls of `deliver` exactly (same floats), which is what
    keeps the simulator's macro steps bit-identical to its per-iteration path.
    """

    def __init__(self, arrival_s, ttft_exp_s, tds_exp_tok_s):
        self.arrival_s = np.asarray(arrival_s, dtype=float)
        n = self.arrival_s.size
        self.ttft_exp_s = np.broadcast_to(np.asarray(ttft_exp_s, dtype=float), (n,)).copy()
        self.tds = np.broadcast_to(np.asarray(tds_exp_tok_s, dtype=float), (n,)).copy()
        self.step_s = 1.0 / self.tds  # reading time of one token
        self.closed_n = np.zeros(n, dtype=np.int64)  # tokens of closed segments
        self.seg_x0 = np.zeros(n)  # digest time (rel. to arrival) of the open segment's first token
        self.seg_n = np.zeros(n, dtype=np.int64)  # tokens in the open segment (0: none yet)
        self.seg_late = np.zeros(n)  # lateness of each token of the open segment
        self.closed_sum_s = np.zeros(n)  # digest times summed over closed segments
        self.closed_deficit = np.zeros(n)
        self.min_step_s = float(self.step_s.min()) if n else np.inf

    # --- derived state (whole arrays, or `_of(idx)` for a subset) --------------------------
    @property
    def delivered(self) -> np.ndarray:
        """Tokens delivered so far (closed segments plus the open one)."""
        return self.closed_n + self.seg_n

    def delivered_of(self, idx) -> np.ndarray:
        return self.closed_n[idx] + self.seg_n[idx]

    def digest_last_of(self, idx) -> np.ndarray:
        """Digest time (relative to arrival) of each request's last delivered token; -inf
        before the first. (`lost_area` and the policies' view take it as an absolute time:
        add `arrival_s`.)"""
        n = self.seg_n[idx]
        last = self.seg_x0[idx] + (n - 1) * self.step_s[idx]
        return np.where(n > 0, last, -np.inf)

    def deficit_of(self, idx) -> np.ndarray:
        """Area lost so far (token*s): sum over delivered tokens of max(0, d_k - e_k)."""
        return self.closed_deficit[idx] + self.seg_n[idx] * self.seg_late[idx]

    def digest_sum_of(self, idx) -> np.ndarray:
        return self.closed_sum_s[idx] + _segment_sum(self.seg_x0[idx], self.seg_n[idx], self.step_s[idx])

    @property
    def digest_last_s(self) -> np.ndarray:
        return self.digest_last_of(slice(None))

    @property
    def deficit(self) -> np.ndarray:
        return self.deficit_of(slice(None))

    @property
    def digest_sum_s(self) -> np.ndarray:
        return self.digest_sum_of(slice(None))

    # --- delivery ---------------------------------------------------------------------------
    def deliver(self, idx: np.ndarray, t_s: float, _joining: int = 0) -> None:
        """Token delivered at absolute time t_s to each request in idx (unique indices).

        `_joining` (deliver_many): that many more tokens follow, each joining the segment of
        this one (the caller has checked that they arrive before the previous one is read)."""
        if idx.size == 0:
            return
        if idx.size <= 2:  # one or two requests (a prefill): plain Python, the same floats
            for i in idx.tolist():
                self._deliver_one(i, t_s, _joining)
            return
        rel = t_s - self.arrival_s[idx]
        n = self.seg_n[idx]
        x0 = self.seg_x0[idx]
        step = self.step_s[idx]
        fresh = (n == 0) | (rel > x0 + n * step)  # arrives after the open segment is read
        if True not in fresh.tolist():  # (cheaper than .any() on a batch)
            self.seg_n[idx] = n + (1 + _joining)
        else:
            if not fresh.all():
                self.seg_n[idx[~fresh]] += 1 + _joining
                idx_f, n, x0, step, rel = idx[fresh], n[fresh], x0[fresh], step[fresh], rel[fresh]
            else:
                idx_f = idx
            self.closed_sum_s[idx_f] += _segment_sum(x0, n, step)
            self.closed_deficit[idx_f] += n * self.seg_late[idx_f]
            before = self.closed_n[idx_f] + n  # tokens delivered before this one
            self.closed_n[idx_f] = before
            self.seg_x0[idx_f] = rel
            self.seg_n[idx_f] = 1 + _joining
            self.seg_late[idx_f] = _late(rel, self.ttft_exp_s[idx_f] + before / self.tds[idx_f])

    def _deliver_one(self, i: int, t_s: float, joining: int) -> None:
        """`deliver` for one request, on Python floats (the same IEEE operations)."""
        rel = t_s - float(self.arrival_s[i])
        n = int(self.seg_n[i])
        x0 = float(self.seg_x0[i])
        step = float(self.step_s[i])
        if n != 0 and not rel > x0 + n * step:
            self.seg_n[i] = n + (1 + joining)
        else:
            before = int(self.closed_n[i])
            if n > 0:
                self.closed_sum_s[i] += n * x0 + step * (n * (n - 1) // 2)
                self.closed_deficit[i] += n * float(self.seg_late[i])
                before += n
                self.closed_n[i] = before
            self.seg_x0[i] = rel
            self.seg_n[i] = 1 + joining
            late = rel - (float(self.ttft_exp_s[i]) + before / float(self.tds[i]))
            self.seg_late[i] = late if late > LATE_TOLERANCE_S else 0.0

    def deliver_many(self, idx: np.ndarray, times_s) -> None:
        """A token at each of the sorted absolute times `times_s` to every request in idx;
        exactly `deliver(idx, t)` for each t in order. When the gaps between the times are
        shorter than every reading step (by a margin far above float round-off), tokens after
        the first join the first one's segment: O(len(idx)) work whatever len(times_s) is."""
        idx = np.asarray(idx)
        t = [float(x) for x in times_s]  # a few times: Python floats (the same differences)
        m = len(t)
        if idx.size == 0 or m == 0:
            return
        if m == 1 or max([b - a for a, b in zip(t[:-1], t[1:], strict=True)]) <= self.min_step_s - SEGMENT_MARGIN_S:
            self.deliver(idx, t[0], m - 1)
            return
        for x in t:  # slower than reading speed: token by token
            self.deliver(idx, x)

    def qoe(self, idx=None, metric: str = DEFAULT_QOE_METRIC) -> np.ndarray:
        """Final QoE of finished requests (their delivered count is their length)."""
        sl = slice(None) if idx is None else idx
        if check_metric(metric) == "andes":
            k = self.delivered_of(sl)
            return andes_qoe(self.digest_sum_of(sl), self.digest_last_of(sl), k, k,
                             self.ttft_exp_s[sl], self.tds[sl])
        return qoe_from_deficit(self.deficit_of(sl), self.delivered_of(sl), self.tds[sl])

    def qoe_unfinished(self, length_tokens, now_s: float, idx=None,
                       metric: str = DEFAULT_QOE_METRIC) -> np.ndarray:
        """QoE so far of requests stopped at `now_s` before delivering `length_tokens`, scored
        against their full expected curve."""
        sl = slice(None) if idx is None else idx
        L = np.maximum(np.asarray(length_tokens), 1)
        if check_metric(metric) == "andes":
            return andes_qoe(self.digest_sum_of(sl), self.digest_last_of(sl), self.delivered_of(sl), L,
                             self.ttft_exp_s[sl], self.tds[sl], now_rel_s=now_s - self.arrival_s[sl])
        return qoe_from_deficit(self.deficit_of(sl), L, self.tds[sl])

    def lost_area_if(self, idx, now_s: float, horizon_s: float, token_interval_s):
        """`lost_area` for the tracked requests `idx`."""
        idx = np.asarray(idx)
        return lost_area(
            now_s, horizon_s, token_interval_s, self.arrival_s[idx], self.ttft_exp_s[idx],
            self.tds[idx], self.delivered_of(idx), self.arrival_s[idx] + self.digest_last_of(idx),
        )


def lost_area(
    now_s: float,
    horizon_s: float,
    token_interval_s,
    arrival_s,
    ttft_exp_s,
    tds_exp_tok_s,
    delivered,
    digest_last_s,
    n_samples: int = 8,
):
    """Area (token*s) lost in [now, now + horizon] if each request gets a token every interval.

    `token_interval_s` is a scalar, an array aligned with the requests, or an (m, 1) column of
    m alternatives (one per candidate batch size): the result then has shape (m, n).
    `np.inf` means the request waits. A fluid approximation of the step curves, sampled at
    `n_samples` points: the quantity Andes' knapsack compares between serving and waiting.
    """
    arr = np.asarray(arrival_s, dtype=float)
    tds = np.asarray(tds_exp_tok_s, dtype=float)
    k0 = np.asarray(delivered, dtype=float)
    d0 = np.asarray(digest_last_s, dtype=float)
    frac = (np.arange(n_samples) + 0.5) / n_samples
    t = now_s + horizon_s * frac[:, None]  # (s, n)
    expected = np.floor(np.clip((t - arr - ttft_exp_s) * tds + 1.0, 0.0, None))
    interval = np.asarray(token_interval_s, dtype=float)
    if interval.ndim:
        interval = np.expand_dims(interval, -2)  # (n,) -> (1, n); (m, 1) -> (m, 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        new = np.where(np.isfinite(interval), np.floor((t - now_s) / interval), 0.0)
    # digested (fluid): what was read by now, then at most tds more tokens per second
    ahead_s = np.where(np.isfinite(d0), np.maximum(0.0, d0 - now_s), 0.0)
    read_now = np.maximum(0.0, k0 - ahead_s * tds)
    digested = np.minimum(k0 + new, read_now + (t - now_s) * tds)
    gap = np.maximum(0.0, expected - digested)
    return gap.mean(axis=-2) * horizon_s
