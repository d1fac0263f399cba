/**
 * Attribute labels of the demo's licensed fixture sample, derived from each source dataset's ORIGINAL
 * annotation (kept in `meta`); null where a source does not annotate the attribute.
 *
 *   identity_attack   attacks on people for a group identity (Perspective's IDENTITY_ATTACK, OpenAI's hate):
 *                     davidson class hate_speech; GermEval 2018 fine ABUSE (degrading by group membership);
 *                     kocohub hate = hate; MPOLD hs_vulgar = HS; MLMA sentiment includes "hateful";
 *                     ToLD-Br any annotator flag for homophobia, racism, misogyny or xenophobia
 *   insult            GermEval 2018 fine INSULT; ToLD-Br any annotator flag for insult
 *   profanity         GermEval 2018 fine PROFANITY; ToLD-Br any annotator flag for obscene; MPOLD hs_vulgar = V
 *
 * Sources with only a toxic / non-toxic label (COLD, Curse-detection, OffensEval TR, ParaDetox) give null.
 */
import type { LabeledText } from '../../data/labeled.js';

export type AttributeLabels = Record<string, 0 | 1 | null>;

const bit = (b: boolean): 0 | 1 => (b ? 1 : 0);
const flagged = (m: Record<string, unknown>, ...keys: string[]) => keys.some((k) => Number(m[k] ?? 0) >= 1);

export function fixtureAttributes(t: Pick<LabeledText, 'source' | 'meta'>): AttributeLabels {
  const m = t.meta ?? {};
  switch (t.source) {
    case 'davidson':
      return { identity_attack: bit(m.class === 'hate_speech') };
    case 'germeval2018':
      return { identity_attack: bit(m.fine === 'ABUSE'), insult: bit(m.fine === 'INSULT'), profanity: bit(m.fine === 'PROFANITY') };
    case 'kocohub_korean_hate_speech':
      return { identity_attack: bit(m.hate === 'hate') };
    case 'mpold_qcri':
      return { identity_attack: bit(m.hs_vulgar === 'HS'), profanity: bit(m.hs_vulgar === 'V') };
    case 'mlma':
      return { identity_attack: bit(String(m.sentiment ?? '').split('_').includes('hateful')) };
    case 'toldbr':
      return {
        identity_attack: bit(flagged(m, 'homophobia', 'racism', 'misogyny', 'xenophobia')),
        insult: bit(flagged(m, 'insult')),
        profanity: bit(flagged(m, 'obscene')),
      };
    default:
      return {};
  }
}
