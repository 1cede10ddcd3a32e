"""Words the synthetic city is made of: names, roads, company parts."""

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
# Weights: the first dozen surnames cover ~40% of people, as in China.
GIVEN_CHARS = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鑫"
    "宇浩然子轩梓涵欣怡诗琪雨桐思远博文俊杰嘉欣佳豪志强建国海燕晓东春梅国华永红"
    "丹婷颖晨阳辉健斌凯鹏飞翔瑞琳雪梅慧敏宏伟振华德明荣光锦程一鸣家豪美玲淑珍"
)
ETHNICITIES = ("汉族",) * 96 + ("壮族", "瑶族", "土家族", "苗族")
RELATIONS_AFTER_HEAD = ("配偶", "子", "女", "父亲", "母亲", "孙子", "孙女")
ROAD_WORDS = "鸿福东纵莞太体育元美宏远银丰新城莞龙东城中心石竹榴花金丰怡丰八一振兴和平光明建设人民解放创业工业环城滨江松湖沿河迎宾富民"
ROAD_SUFFIXES = ("路", "大道", "街", "路", "路", "大街", "巷")
COMMUNITY_WORDS = "新塘白马鸿福石井水濂袁屋边上坝下桥周溪东泰莲湖岗贝罗沙蛤地樟村梨川温塘鳌峙塘"
COMPANY_BRANDS = "鸿福华盛金信宏达永丰创新联合精工科建伟业泰和利源恒通嘉诚汇丰兴旺德隆振华瑞丰顺发"
INDUSTRY_WORDS = {
    "C": ("电子科技", "五金制品", "塑胶制品", "家具制造", "服装", "模具", "包装材料"),
    "F": ("贸易", "商行", "百货", "建材经营部", "五金店"),
    "H": ("餐饮管理", "酒店", "饮食店", "茶餐厅", "食府"),
    "I": ("信息技术", "网络科技", "软件"),
    "K": ("房地产开发", "物业管理"),
    "E": ("建筑工程", "装饰工程", "建设工程"),
    "L": ("企业管理咨询", "商务服务", "人力资源"),
    "M": ("检测技术", "科技研究"),
    "O": ("家政服务", "维修服务部", "美容美发店"),
    "G": ("物流", "运输", "货运代理"),
    "A": ("农业发展", "种养专业合作社"),
}
INDUSTRY_CODES = {
    "C": ("C3911", "C3399", "C2929", "C2110", "C1811", "C3525", "C2231"),
    "F": ("F5212", "F5131", "F5274", "F5137"),
    "H": ("H6210", "H6110", "H6291", "H6220"),
    "I": ("I6510", "I6420", "I6513"),
    "K": ("K7010", "K7020"),
    "E": ("E4701", "E5010", "E4890"),
    "L": ("L7211", "L7224", "L7263"),
    "M": ("M7452", "M7320"),
    "O": ("O8010", "O8090", "O8121"),
    "G": ("G5430", "G5821"),
    "A": ("A0141", "A0311"),
}
SECTION_WEIGHTS = {"C": 30, "F": 28, "H": 12, "I": 4, "K": 2, "E": 5, "L": 8, "M": 3, "O": 5, "G": 3}
ABNORMAL_REASONS = (
    "未按照规定期限公示年度报告",
    "通过登记的住所或者经营场所无法联系",
    "未在责令的期限内公示有关企业信息",
    "公示企业信息隐瞒真实情况、弄虚作假",
)
VIOLATIONS = ("无照经营", "虚假宣传", "销售不合格产品", "未按规定明码标价", "食品安全违法", "违反登记管理规定")
OTHER_PROVINCE_DIVISIONS = (
    "430521", "430426", "452122", "450881", "360731", "360428", "511322", "510921",
    "410526", "411522", "441581", "441424", "445221", "421182", "350583", "532128", "522121",
)
FUNERAL_HOMES = ("东莞市殡仪馆", "东莞市东城殡仪服务站", "东莞市塘厦殡仪服务站")
COURTS = ("东莞市第一人民法院", "东莞市第二人民法院", "东莞市第三人民法院", "东莞市中级人民法院")
TAX_AUTHORITIES_SUFFIX = "税务分局"
FOOD_FORMATS = ("餐饮服务经营者", "食品销售经营者", "单位食堂")
HAZARD_CATEGORIES = ("消防", "食品安全", "安全生产", "治安", "环境")


def traditional_forms() -> dict[str, str]:
    """Simplified character -> its traditional form, for the characters with
    exactly one (OpenCC's STCharacters dictionary, the table Chinese
    converters use): how a Hong Kong, Macao or Taiwan document writes a name."""
    return _traditional_forms_cached()


def _read_forms() -> dict[str, str]:
    from importlib.resources import files

    forms = {}
    for line in files("opencc").joinpath("dictionary/STCharacters.txt").read_text(encoding="utf-8").splitlines():
        simplified, _, variants = line.partition("\t")
        choices = variants.split()
        if len(simplified) == 1 and len(choices) == 1 and choices[0] != simplified:
            forms[simplified] = choices[0]
    return forms


_FORMS: dict[str, str] = {}


def _traditional_forms_cached() -> dict[str, str]:
    if not _FORMS:
        _FORMS.update(_read_forms())
    return _FORMS
