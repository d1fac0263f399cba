/**
 * Attribute names and how the compatible APIs see them. Attributes are lower-case snake_case in bundles and in
 * /v1/classify (toxicity, insult, identity_attack, profanity, ...); Perspective names the same ones in upper case
 * (TOXICITY, INSULT, IDENTITY_ATTACK, PROFANITY); /v1/moderations reports them under OpenAI categories through a
 * bundle-level mapping (manifest openai_categories).
 */

/** Every bundle scores it: its head is the bundle's head.json. */
export const TOXICITY = 'toxicity';

export const perspectiveName = (attribute: string) => attribute.toUpperCase();
export const attributeOfPerspective = (name: string) => name.toLowerCase();

/**
 * The default OpenAI category mapping: harassment carries toxicity (the broadest abuse score), hate carries
 * identity_attack when the bundle has it (else toxicity). Every other category is unscored (false / 0).
 */
export function defaultOpenAiCategories(attributes: readonly string[]): Record<string, string> {
  return { harassment: TOXICITY, hate: attributes.includes('identity_attack') ? 'identity_attack' : TOXICITY };
}
