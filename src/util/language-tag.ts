/** A BCP 47-style language tag as clients send it ('en', 'pt-BR', 'zh_Hant'): the one pattern every input uses. */
export const LANGUAGE_TAG = /^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$/;
