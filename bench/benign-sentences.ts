/**
 * Friendly, everyday sentences per language (written for this benchmark; no dataset text): the "three friendly
 * sentences" an evader pads an insult with. Bench-only.
 */
export const BENIGN_SENTENCES: Record<string, string[]> = {
  en: [
    'Thank you so much for your help yesterday.', 'I hope you have a wonderful weekend with your family.', 'The weather is lovely today, perfect for a walk.',
    'Congratulations on your new job!', 'I really enjoyed the photos you shared.', 'Let me know if you need anything else.',
    'We are meeting for coffee at ten tomorrow.', 'Happy birthday, I wish you all the best.', 'The recipe turned out great, thanks for sharing it.',
    'Have a safe trip home.', 'I just finished reading that book you recommended.', 'See you at the meeting next week.',
  ],
  de: [
    'Vielen Dank für deine Hilfe gestern.', 'Ich wünsche dir ein schönes Wochenende mit deiner Familie.', 'Das Wetter ist heute herrlich, perfekt für einen Spaziergang.',
    'Herzlichen Glückwunsch zur neuen Stelle!', 'Die Fotos, die du geteilt hast, haben mir sehr gefallen.', 'Sag Bescheid, wenn du noch etwas brauchst.',
    'Wir treffen uns morgen um zehn zum Kaffee.', 'Alles Gute zum Geburtstag!', 'Das Rezept ist super gelungen, danke fürs Teilen.',
    'Komm gut nach Hause.', 'Ich habe das Buch, das du empfohlen hast, gerade fertig gelesen.', 'Bis nächste Woche beim Treffen.',
  ],
  fr: [
    "Merci beaucoup pour ton aide d'hier.", 'Je te souhaite un excellent week-end en famille.', "Il fait très beau aujourd'hui, parfait pour une promenade.",
    'Félicitations pour ton nouveau travail !', "J'ai beaucoup aimé les photos que tu as partagées.", "Dis-moi si tu as besoin d'autre chose.",
    'On se retrouve demain à dix heures pour un café.', 'Joyeux anniversaire, je te souhaite le meilleur.', 'La recette était délicieuse, merci de l’avoir partagée.',
    'Bon retour à la maison.', "Je viens de finir le livre que tu m'as conseillé.", 'À la semaine prochaine pour la réunion.',
  ],
  pt: [
    'Muito obrigado pela ajuda de ontem.', 'Espero que você tenha um ótimo fim de semana com a família.', 'O tempo está lindo hoje, perfeito para uma caminhada.',
    'Parabéns pelo novo emprego!', 'Gostei muito das fotos que você compartilhou.', 'Me avise se precisar de mais alguma coisa.',
    'Vamos tomar um café amanhã às dez.', 'Feliz aniversário, tudo de bom para você.', 'A receita ficou ótima, obrigado por compartilhar.',
    'Boa viagem de volta para casa.', 'Acabei de ler o livro que você recomendou.', 'Até a reunião da semana que vem.',
  ],
  tr: [
    'Dünkü yardımın için çok teşekkür ederim.', 'Ailenle güzel bir hafta sonu geçirmeni dilerim.', 'Bugün hava çok güzel, yürüyüş için harika.',
    'Yeni işin hayırlı olsun!', 'Paylaştığın fotoğrafları çok beğendim.', 'Başka bir şeye ihtiyacın olursa haber ver.',
    'Yarın saat onda kahve içmek için buluşuyoruz.', 'Doğum günün kutlu olsun, her şey gönlünce olsun.', 'Tarif çok güzel oldu, paylaştığın için teşekkürler.',
    'Eve dönüş yolculuğun iyi geçsin.', 'Önerdiğin kitabı yeni bitirdim.', 'Gelecek haftaki toplantıda görüşürüz.',
  ],
  ar: [
    'شكرا جزيلا على مساعدتك أمس.', 'أتمنى لك عطلة نهاية أسبوع رائعة مع عائلتك.', 'الجو جميل اليوم، مثالي للمشي.',
    'مبروك على الوظيفة الجديدة!', 'أعجبتني الصور التي شاركتها كثيرا.', 'أخبرني إذا احتجت أي شيء آخر.',
    'سنلتقي غدا في الساعة العاشرة لشرب القهوة.', 'عيد ميلاد سعيد، أتمنى لك كل الخير.', 'الوصفة كانت رائعة، شكرا على مشاركتها.',
    'رحلة سعيدة إلى البيت.', 'انتهيت للتو من قراءة الكتاب الذي نصحتني به.', 'أراك في الاجتماع الأسبوع القادم.',
  ],
  ko: [
    '어제 도와줘서 정말 고마워요.', '가족과 함께 즐거운 주말 보내세요.', '오늘 날씨가 정말 좋아서 산책하기 딱이에요.',
    '새 직장 취업을 축하해요!', '공유해 주신 사진들 정말 잘 봤어요.', '다른 게 필요하면 언제든 말해 주세요.',
    '내일 열 시에 커피 마시러 만나요.', '생일 축하해요, 좋은 일만 가득하길 바라요.', '레시피대로 했더니 정말 맛있었어요, 공유해 줘서 고마워요.',
    '집에 조심해서 들어가세요.', '추천해 주신 책을 방금 다 읽었어요.', '다음 주 회의 때 봬요.',
  ],
  zh: [
    '非常感谢你昨天的帮助。', '祝你和家人周末愉快。', '今天天气真好，很适合散步。',
    '恭喜你找到新工作！', '你分享的照片我很喜欢。', '如果还需要什么，请告诉我。',
    '我们明天十点一起喝咖啡。', '生日快乐，祝你一切顺利。', '这个菜谱做出来很好吃，谢谢分享。',
    '回家路上注意安全。', '我刚读完你推荐的那本书。', '下周开会见。',
  ],
};
