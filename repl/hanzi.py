"""Simplified and traditional Chinese characters: when a word typed is unknown but its form in
the other script is in the vocabulary, say so (simplified typed against a traditional text).

``PAIRS`` holds common characters that differ between the two scripts, each group a simplified
character followed by its traditional forms (some have several: 里 is 裏 or 裡).
"""
from __future__ import annotations

from typing import Callable, Iterable

PAIRS = """
孙孫 说說 这這 来來 们們 为為 个個 时時 里裏裡 国國 门門 见見 问問 师師 长長 马馬 东東 还還 过過
对對 会會 后後 与與 着著 没沒 发發髮 开開 头頭 么麼 边邊 动動 从從 两兩 间間 样樣 现現 听聽 经經
将將 无無 万萬 气氣 龙龍 宝寶 几幾 兴興 观觀 礼禮 闻聞 战戰 罗羅 汉漢 乐樂 处處 众眾 远遠 进進
连連 变變 飞飛 鸟鳥 铁鐵 钱錢 银銀 书書 车車 军軍 亲親 爱愛 杀殺 难難 岁歲 实實 灵靈 圣聖 传傳
记記 话話 语語 请請 谁誰 让讓 认認 识識 读讀 该該 谢謝 许許 论論 设設 试試 诗詩 闹鬧 关關 阳陽
阴陰 队隊 陈陳 张張 尔爾 齐齊 斋齋 岭嶺 风風 云雲 电電 虽雖 离離 归歸 总總 点點 热熱 爷爺 猪豬
猫貓 鱼魚 鸡雞 驾駕 骑騎 惊驚 骂罵 体體 华華 单單 卖賣 买買 贝貝 财財 贵貴 贼賊 赶趕 赵趙 轮輪
转轉 轻輕 达達 运運 选選 迟遲 办辦 务務 劝勸 劳勞 势勢 叶葉 号號 吗嗎 员員 唤喚 啸嘯 园園 围圍
图圖 场場 坏壞 块塊 坚堅 坛壇 墙牆 声聲 备備 复復複 夺奪 妈媽 学學 宁寧 宾賓 审審 寻尋 导導 尽盡
层層 属屬 带帶 帮幫 干幹乾 并並 广廣 庄莊 庆慶 应應 异異 弹彈 强強 当當 录錄 忆憶 怀懷 态態 怜憐
恶惡 悬懸 惯慣 户戶 扑撲 执執 扫掃 扬揚 护護 报報 担擔 拥擁 择擇 挡擋 换換 据據 断斷 旧舊 显顯
晓曉 术術 机機 杂雜 权權 条條 杨楊 极極 枪槍 树樹 桥橋 梦夢 检檢 欢歡 残殘 毕畢 汤湯 泪淚 泽澤
洁潔 济濟 浅淺 测測 满滿 滚滾 灭滅 灯燈 炉爐 烂爛 烦煩 烧燒 牵牽 犹猶 狮獅 独獨 狱獄 献獻 环環
画畫 疗療 盖蓋 监監 盘盤 睁睜 祸禍 种種 称稱 积積 稳穩 穷窮 窃竊 笔筆 笼籠 简簡 类類 粮糧 紧緊
红紅 约約 级級 纪紀 纸紙 线線 练練 细細 织織 终終 结結 给給 绝絕 统統 继繼 绳繩 续續 绿綠 缘緣
网網 罚罰 职職 联聯 肠腸 胆膽 胜勝 脑腦 脚腳 脸臉 腾騰 艺藝 节節 芦蘆 苏蘇 苍蒼 药藥 获獲 蓝藍
虫蟲 补補 装裝 规規 视視 觉覺 计計 训訓 议議 讲講 证證 诉訴 词詞 诚誠 详詳 误誤 调調 谈談 谋謀
谓謂 负負 败敗 责責 贤賢 质質 贪貪 费費 赏賞 赐賜 赞贊 跃躍 较較 辞辭 迈邁 违違 遗遺 释釋 针針
钟鐘鍾 钢鋼 铃鈴 锁鎖 锋鋒 错錯 镇鎮 镜鏡 闪閃 闭閉 闲閒閑 阁閣 阵陣 阶階 陆陸 险險 随隨 隐隱
雾霧 静靜 韩韓 页頁 顶頂 项項 顺順 须須鬚 顾顧 顿頓 预預 领領 题題 颜顏 额額 饥飢饑 饭飯 饮飲
饱飽 饿餓 馆館 驰馳 验驗 鲁魯 鸣鳴 鹤鶴 鹰鷹 麦麥 黄黃 齿齒 龟龜 萨薩 净淨 斗鬥 尸屍 猕獼 弥彌
愿願 适適 梁樑 丰豐 丽麗 举舉 义義 乌烏 乔喬 习習 乡鄉 亏虧 产產 亿億 仪儀 价價 优優 伙夥
伟偉 伤傷 侠俠 俭儉 债債 倾傾 儿兒 党黨 兰蘭 养養 兽獸 冈岡 写寫 农農 冲衝 决決
况況 冻凍 减減 凤鳳 凭憑 击擊 凿鑿 刘劉 则則 刚剛 创創 删刪 别別 刹剎 剑劍 剧劇 劲勁 勋勳
"""


def _table() -> dict[str, tuple[str, ...]]:
    """Each character of ``PAIRS`` → its forms in the other script."""
    other: dict[str, tuple[str, ...]] = {}
    for group in PAIRS.split():
        simple, traditional = group[0], group[1:]
        other[simple] = other.get(simple, ()) + tuple(c for c in traditional if c not in other.get(simple, ()))
        for c in traditional:
            if simple not in other.get(c, ()):
                other[c] = other.get(c, ()) + (simple,)
    return other


_OTHER = _table()
SIMPLIFIED = frozenset(group[0] for group in PAIRS.split())


def counterpart(word: str, known: Callable[[str], bool]) -> str | None:
    """``word`` written in the other script, character by character, when that form is ``known``."""
    options = [""]
    for ch in word:
        forms = _OTHER.get(ch, (ch,))
        options = [o + f for o in options for f in forms][:64]
    found = [o for o in options if o != word and known(o)]
    return found[0] if found else None


def script_hint(unknown: Iterable[str], known: Callable[[str], bool], limit: int = 8) -> str:
    """One clause for the unknown words whose other-script form is known, e.g. ``this text is in
    traditional characters: type 孫 說 for 孙 说``; '' when there is none."""
    pairs = []
    for word in dict.fromkeys(unknown):
        other = counterpart(word, known)
        if other is not None:
            pairs.append((word, other))
    if not pairs:
        return ""
    script = "traditional" if any(ch in SIMPLIFIED for w, _ in pairs for ch in w) else "simplified"
    shown = pairs[:limit]
    more = "…" if len(pairs) > limit else ""
    return f"this text is in {script} characters: type {' '.join(o for _, o in shown)}{more} for {' '.join(w for w, _ in shown)}{more}"
