/**
 * Redis key names of the collective. Everything of a run lives under `smolrate:{runId}:`; the
 * keys of one rendezvous generation under `smolrate:{runId}:g{gen}.{token}:` (the random token
 * keeps a zombie of an earlier generation from ever writing into a later one, even when the
 * generation counter restarted after the rendezvous record expired).
 *
 *   smolrate:{runId}:rdzv                      hash: gen, token, world, state, creator, m{rank}, error
 *   {G}hb:{rank}                               heartbeat ("alive|member" / "closed|member"), PX deadAfterMs
 *   {G}go                                      list: rendezvous release tokens
 *   {G}abort                                   the first fatal error of any rank
 *   {G}bar:{seq} / bar:{seq}:go                barrier arrivals (hash rank → tag) / release tokens
 *   {G}bc:{seq}:{chunk} / :go / :ack           broadcast payload chunks / metadata tokens / reader count
 *   {G}ag:{seq}:{rank} / ag:{seq} / :go / :ack all-gather values / arrivals / release / reader count
 *   {G}ar:{seq}:{seg}:{from}:{chunk}           all-reduce contribution of rank `from` to segment `seg`
 *   {G}ar:{seq}:{seg}:red:{chunk} / …:ack      reduced chunk of segment `seg` / reader count
 *   {G}ar:{seq}:in:{seg} / ar:{seq}:out:{rank} notifications to the owner of `seg` / to `rank`
 */
const KEY_ROOT = 'smolrate';

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** True when `runId` can be used in key names (no ':' and no glob characters). */
export function isValidRunId(runId: string): boolean {
  return RUN_ID.test(runId);
}

/** `smolrate:{runId}:` */
export function runPrefix(runId: string): string {
  return `${KEY_ROOT}:${runId}:`;
}

export function rendezvousKey(runId: string): string {
  return `${runPrefix(runId)}rdzv`;
}

/** `smolrate:{runId}:g{gen}.{token}:` — the same construction as in the Lua scripts. */
export function generationPrefix(runId: string, gen: number, token: string): string {
  return `${runPrefix(runId)}g${gen}.${token}:`;
}

/** Key builders of one generation. */
export class GenerationKeys {
  constructor(readonly prefix: string) {}

  heartbeat(rank: number): string {
    return `${this.prefix}hb:${rank}`;
  }
  go(): string {
    return `${this.prefix}go`;
  }
  abort(): string {
    return `${this.prefix}abort`;
  }
  barrier(seq: number): string {
    return `${this.prefix}bar:${seq}`;
  }
  barrierGo(seq: number): string {
    return `${this.prefix}bar:${seq}:go`;
  }
  broadcastChunk(seq: number, chunk: number): string {
    return `${this.prefix}bc:${seq}:${chunk}`;
  }
  broadcastGo(seq: number): string {
    return `${this.prefix}bc:${seq}:go`;
  }
  broadcastAck(seq: number): string {
    return `${this.prefix}bc:${seq}:ack`;
  }
  gatherValue(seq: number, rank: number): string {
    return `${this.prefix}ag:${seq}:${rank}`;
  }
  gather(seq: number): string {
    return `${this.prefix}ag:${seq}`;
  }
  gatherGo(seq: number): string {
    return `${this.prefix}ag:${seq}:go`;
  }
  gatherAck(seq: number): string {
    return `${this.prefix}ag:${seq}:ack`;
  }
  contribution(seq: number, segment: number, from: number, chunk: number): string {
    return `${this.prefix}ar:${seq}:${segment}:${from}:${chunk}`;
  }
  reduced(seq: number, segment: number, chunk: number): string {
    return `${this.prefix}ar:${seq}:${segment}:red:${chunk}`;
  }
  reducedAck(seq: number, segment: number, chunk: number): string {
    return `${this.prefix}ar:${seq}:${segment}:red:${chunk}:ack`;
  }
  ownerInbox(seq: number, segment: number): string {
    return `${this.prefix}ar:${seq}:in:${segment}`;
  }
  rankInbox(seq: number, rank: number): string {
    return `${this.prefix}ar:${seq}:out:${rank}`;
  }
}
