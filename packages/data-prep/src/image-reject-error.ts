/**
 * The image stage's failure type: a fetch or decode problem that turns the item into a reject
 * (rejects.jsonl) instead of failing the job. `reason` is a stable REJECT_REASONS code; `detail` is
 * the human-readable part of the reject record. Details must be deterministic for the same input
 * (they end up in rejects.jsonl, which must be byte-identical across runs): no timings, no ports
 * of ephemeral sockets beyond what the URL itself says, no random temporary names.
 */
import { DataError } from '@smolrate/core';
import type { RejectReason } from './types.js';

/** Longest detail kept; longer ones (huge URLs, chatty decoder messages) are cut. */
const MAX_REJECT_DETAIL = 400;

export class ImageRejectError extends DataError {
  readonly reason: RejectReason;
  readonly detail: string;
  constructor(reason: RejectReason, detail: string, options?: { cause?: unknown }) {
    const cut = detail.length > MAX_REJECT_DETAIL ? `${detail.slice(0, MAX_REJECT_DETAIL - 1)}…` : detail;
    super(`${reason}: ${cut}`, options);
    this.reason = reason;
    this.detail = cut;
  }
}
