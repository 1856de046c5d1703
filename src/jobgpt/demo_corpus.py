"""The built-in demo corpus: synthetic Korean job postings in the reference training format.

So that `jobgpt tokenizer` works on a fresh clone with no data, the default input
(data/samples.txt) is written here when it is missing. Each posting is drawn from the tables
below (roles, invented companies, cities, salaries, deadlines, benefits, contacts), rendered with
the same template the corpus reader uses for JSON postings (`jobgpt.postings.render_posting`), and
wrapped as a `[QUESTION]/[DOC]/[ANSWER]` example whose answer is derived from the posting's own
fields — so a model trained on it learns to find and copy fields, as on the real corpus.

Everything is drawn from one `random.Random(seed)`: the same seed gives the same bytes.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from jobgpt.config import DEFAULT_CORPUS, DemoDataConfig
from jobgpt.errors import ConfigError
from jobgpt.files import atomic_open
from jobgpt.postings import render_posting
from jobgpt.qa import BLOCK_SEPARATOR, format_qa_document

logger = logging.getLogger(__name__)


def _items(text: str) -> tuple[str, ...]:
    """A pool written one item per line (or separated by '|'), so the tables stay readable."""
    return tuple(item.strip() for item in re.split(r"[|\n]", text) if item.strip())


def _names(text: str) -> tuple[tuple[str, str], ...]:
    """'한빛=hanbit | 누리=nuri' -> (Korean, romanised) pairs; the romanised part builds domains."""
    return tuple(tuple(item.split("=")) for item in _items(text))  # type: ignore[misc]


@dataclass(frozen=True)
class Role:
    """One kind of job, with the pools its postings draw from."""

    area: str  # the field, as written in "… 분야 경력 3년 이상"
    industry: str
    positions: tuple[str, ...]
    departments: tuple[str, ...]
    business: tuple[str, ...]  # what a company hiring for it does: "…하는 기업입니다"
    suffixes: tuple[tuple[str, str], ...]  # company-name endings, (Korean, romanised)
    duties: tuple[str, ...]
    requirements: tuple[str, ...]
    preferred: tuple[str, ...]
    skills: tuple[str, ...]
    documents: tuple[str, ...]  # what to submit besides a résumé
    hours: tuple[str, ...]
    perks: tuple[str, ...]  # benefits typical of the field, added to the common pool
    salary: int  # a newcomer's yearly pay, in 만원
    process: str
    forms: tuple[str, ...] = ("{name}", "(주){name}", "주식회사 {name}", "{name} 주식회사")
    noun: str = "기업"


_IT = dict(
    industry="IT/소프트웨어",
    suffixes=_names("소프트=soft | 테크=tech | 랩스=labs | 시스템즈=systems | 데이터=data | AI=ai"),
    hours=_items("""
        주 5일 (월~금) 10:00~19:00, 유연근무제
        자율출퇴근제 (코어타임 11:00~16:00)
        시차출퇴근제 (08:00~10:00 출근), 주 2회 재택근무
    """),
    perks=_items("""
        최신 MacBook Pro 및 모니터 지급
        클라우드 자격증 응시료 지원
        컨퍼런스 참가비 지원
        스톡옵션 부여 (내규에 따름)
    """),
    process="서류전형 → 코딩테스트 → 1차 기술면접 → 2차 컬처핏 면접 → 처우 협의 → 최종합격",
)

ROLES: tuple[Role, ...] = (
    Role(
        area="백엔드 개발",
        positions=_items(
            "백엔드 개발자 | 서버 개발자 | Java 백엔드 엔지니어 | Python 백엔드 개발자"
        ),
        departments=_items("플랫폼개발팀 | 서비스개발실 | 커머스개발팀"),
        business=_items("""
            B2B SaaS 플랫폼을 개발하는
            온라인 커머스 플랫폼을 운영하는
            핀테크 결제 서비스를 제공하는
        """),
        duties=_items("""
            대규모 트래픽을 처리하는 API 서버 설계 및 개발
            MSA 기반 서비스 구조 개선
            데이터베이스 모델링 및 쿼리 성능 최적화
            결제/정산 시스템 개발 및 운영
            CI/CD 파이프라인 구축 및 배포 자동화
            장애 대응 및 모니터링 체계 개선
            코드 리뷰를 통한 팀 코드 품질 관리
        """),
        requirements=_items("""
            Java/Kotlin 또는 Python 기반 서버 개발 경험
            RDBMS(MySQL, PostgreSQL) 활용 경험
            REST API 설계 및 개발 경험
            Git 기반 협업 경험
            컴퓨터공학 관련 전공 또는 이에 준하는 지식
        """),
        preferred=_items("""
            AWS 등 클라우드 환경 운영 경험
            Kubernetes, Docker 사용 경험
            Kafka 등 메시지 큐 사용 경험
            대용량 트래픽 서비스 운영 경험
            오픈소스 기여 경험
        """),
        skills=_items(
            "Java | Spring Boot | Kotlin | Python | Django | MySQL | Redis | AWS | Docker"
            " | Kubernetes | Kafka"
        ),
        documents=_items("GitHub 주소 또는 포트폴리오"),
        salary=3800,
        **_IT,
    ),
    Role(
        area="프론트엔드 개발",
        positions=_items("프론트엔드 개발자 | 웹 프론트엔드 엔지니어 | React 개발자"),
        departments=_items("프로덕트개발팀 | 웹개발팀 | 디자인시스템팀"),
        business=_items("""
            모바일 헬스케어 앱을 서비스하는
            에듀테크 플랫폼을 운영하는
            부동산 정보 서비스를 제공하는
        """),
        duties=_items("""
            React 기반 웹 서비스 개발 및 운영
            디자인 시스템 컴포넌트 개발
            웹 성능 최적화 및 접근성 개선
            디자이너, 백엔드 개발자와 협업하여 신규 기능 개발
            프론트엔드 테스트 코드 작성 및 품질 관리
            관리자(어드민) 페이지 개발
        """),
        requirements=_items("""
            HTML, CSS, JavaScript에 대한 이해
            React 또는 Vue.js 실무 경험
            TypeScript 사용 경험
            REST API 연동 경험
            원활한 커뮤니케이션 능력
        """),
        preferred=_items("""
            Next.js 기반 SSR 서비스 개발 경험
            웹 접근성 관련 지식
            Storybook 등 디자인 시스템 구축 경험
            모바일 웹 최적화 경험
        """),
        skills=_items(
            "React | TypeScript | JavaScript | Next.js | Vue.js | Redux | Webpack | Jest"
        ),
        documents=_items("GitHub 주소 또는 포트폴리오"),
        salary=3600,
        **_IT,
    ),
    Role(
        area="데이터 분석",
        positions=_items("데이터 분석가 | 데이터 엔지니어 | 머신러닝 엔지니어 | AI 연구원"),
        departments=_items("데이터팀 | AI연구소 | 데이터플랫폼팀"),
        business=_items("""
            AI 기반 추천 서비스를 개발하는
            물류 데이터 분석 솔루션을 만드는
            의료 영상 AI를 연구하는
        """),
        duties=_items("""
            서비스 지표 정의 및 대시보드 구축
            데이터 파이프라인 설계 및 운영
            A/B 테스트 설계 및 결과 분석
            머신러닝 모델 개발 및 서비스 적용
            대규모 데이터 전처리 및 품질 관리
            분석 결과 리포트 작성 및 공유
        """),
        requirements=_items("""
            Python, SQL 활용 능력
            통계 및 데이터 분석 방법론에 대한 이해
            Pandas, NumPy 등 데이터 처리 라이브러리 사용 경험
            관련 전공 학사 이상
        """),
        preferred=_items("""
            PyTorch 또는 TensorFlow 사용 경험
            Spark, Airflow 등 데이터 엔지니어링 도구 경험
            BigQuery 등 클라우드 데이터 웨어하우스 경험
            논문 게재 또는 경진대회 수상 경험
        """),
        skills=_items("Python | SQL | Pandas | PyTorch | TensorFlow | Spark | Airflow | BigQuery"),
        documents=_items("포트폴리오 (분석 프로젝트) | GitHub 주소"),
        salary=4000,
        **_IT,
    ),
    Role(
        area="인프라 운영",
        positions=_items("DevOps 엔지니어 | 클라우드 엔지니어 | SRE | 시스템 엔지니어"),
        departments=_items("인프라팀 | 클라우드운영팀 | SRE팀"),
        business=_items("""
            클라우드 관리 서비스를 제공하는
            게임 서버 플랫폼을 운영하는
            보안 솔루션을 개발하는
        """),
        duties=_items("""
            AWS 클라우드 인프라 설계 및 운영
            Kubernetes 클러스터 구축 및 운영
            Terraform을 이용한 인프라 코드화(IaC)
            모니터링 및 알림 시스템 구축 (Prometheus, Grafana)
            보안 정책 수립 및 취약점 점검
            서버 장애 대응 및 원인 분석
        """),
        requirements=_items("""
            Linux 시스템 운영 경험
            네트워크 및 보안에 대한 기본 지식
            클라우드(AWS, GCP, Azure) 운영 경험
            Shell 또는 Python 스크립트 작성 능력
        """),
        preferred=_items("""
            AWS Solutions Architect 자격증 보유
            CKA 자격증 보유
            대규모 서비스 인프라 운영 경험
            On-premise에서 클라우드로의 마이그레이션 경험
        """),
        skills=_items(
            "AWS | Kubernetes | Docker | Terraform | Linux | Prometheus | Grafana"
            " | Jenkins | ArgoCD"
        ),
        documents=_items("자격증 사본"),
        salary=3800,
        **_IT,
    ),
    Role(
        area="UI/UX 디자인",
        industry="디자인",
        positions=_items("UI/UX 디자이너 | 프로덕트 디자이너 | 웹 디자이너 | BX 디자이너"),
        departments=_items("디자인팀 | 브랜드경험팀 | 프로덕트팀"),
        business=_items("""
            라이프스타일 앱을 서비스하는
            온라인 쇼핑몰을 운영하는
            브랜드 컨설팅을 하는
        """),
        suffixes=_names("디자인=design | 스튜디오=studio | 크리에이티브=creative | 랩스=labs"),
        duties=_items("""
            모바일 앱 및 웹 서비스 UI 디자인
            사용자 리서치 및 사용성 테스트 진행
            디자인 시스템 구축 및 관리
            프로모션 배너 및 상세페이지 디자인
            브랜드 아이덴티티 가이드 제작
            개발자와 협업하여 디자인 QA 진행
        """),
        requirements=_items("""
            Figma 활용 능력
            UI/UX 디자인 실무 경험
            포트폴리오 제출 필수
            디자인 관련 전공 또는 이에 준하는 역량
        """),
        preferred=_items("""
            Adobe Photoshop, Illustrator 능숙자
            모션 그래픽 (After Effects) 가능자
            HTML/CSS 기본 지식 보유자
            서비스 런칭 경험
        """),
        skills=_items("Figma | Photoshop | Illustrator | After Effects | Protopie | Zeplin"),
        documents=_items("포트폴리오 (PDF 또는 URL)"),
        hours=_items("""
            주 5일 (월~금) 10:00~19:00
            주 5일 (월~금) 09:00~18:00, 월 1회 금요일 조기 퇴근
        """),
        perks=_items("디자인 툴 라이선스 지원 | 전시회 관람비 지원 | 최신 MacBook Pro 지급"),
        salary=3000,
        process="서류 및 포트폴리오 심사 → 과제 전형 → 실무 면접 → 최종합격",
    ),
    Role(
        area="마케팅",
        industry="유통/커머스",
        positions=_items("퍼포먼스 마케터 | 브랜드 마케터 | 콘텐츠 마케터 | CRM 마케터"),
        departments=_items("마케팅팀 | 브랜드전략팀 | 그로스팀"),
        business=_items("""
            비건 화장품 브랜드를 운영하는
            건강기능식품을 판매하는
            패션 이커머스를 운영하는
        """),
        suffixes=_names("커머스=commerce | 코스메틱=cosmetic | 브랜즈=brands | 푸드=food"),
        duties=_items("""
            온라인 광고 캠페인 기획 및 운영 (Meta, Google, 네이버)
            마케팅 성과 분석 및 리포트 작성
            SNS 채널 콘텐츠 기획 및 운영
            신제품 런칭 캠페인 기획
            인플루언서 협업 및 제휴 마케팅
            CRM 메시지(앱 푸시, 카카오 알림톡) 기획 및 운영
        """),
        requirements=_items("""
            디지털 마케팅 실무 경험
            데이터 기반 의사결정 능력
            엑셀 활용 능력 (VLOOKUP, 피벗 테이블)
            원활한 커뮤니케이션 및 협업 능력
        """),
        preferred=_items("""
            GA4, 앱스플라이어 등 분석 툴 사용 경험
            뷰티/패션 업계 경험
            영상 편집 가능자
            광고 대행사 근무 경험
        """),
        skills=_items("Google Analytics | Meta Ads | Google Ads | Excel | Notion | SQL"),
        documents=_items("포트폴리오 (캠페인 사례)"),
        hours=_items("주 5일 (월~금) 09:00~18:00 | 주 5일 (월~금) 10:00~19:00, 시차출퇴근제"),
        perks=_items("자사 제품 임직원 할인 | 자기계발비 월 10만원 지원"),
        salary=3000,
        process="서류전형 → 1차 실무 면접 → 2차 임원 면접 → 최종합격",
    ),
    Role(
        area="영업",
        industry="제조/유통",
        positions=_items("B2B 영업 담당자 | 기술영업 엔지니어 | 해외영업 담당자 | 영업관리 사원"),
        departments=_items("영업팀 | 해외영업팀 | 영업본부"),
        business=_items("""
            산업용 센서를 제조·판매하는
            식자재를 유통하는
            사무·생활용품을 유통하는
            산업 설비를 수입·판매하는
        """),
        suffixes=_names("산업=industry | 상사=trading | 유통=distribution | 테크=tech"),
        duties=_items("""
            신규 거래처 발굴 및 기존 고객 관리
            견적서 작성 및 계약 협상
            매출 목표 관리 및 실적 보고
            해외 바이어 대응 및 수출 업무
            전시회 참가 및 제품 프레젠테이션
            거래처 방문 영업
        """),
        requirements=_items("""
            운전면허 1종 또는 2종 보통 소지자
            영업 관련 경험 (인턴 포함)
            MS Office 활용 가능자
            적극적이고 책임감 있는 성향
        """),
        preferred=_items("""
            영어 또는 중국어 비즈니스 회화 가능자
            동종 업계 영업 경력자
            무역 관련 자격증 보유자
            CRM 툴(Salesforce 등) 사용 경험
        """),
        skills=_items("Excel | PowerPoint | Salesforce | ERP"),
        documents=_items("운전면허증 사본 | 어학 성적표 (해당자)"),
        hours=_items("주 5일 (월~금) 08:30~17:30 | 주 5일 (월~금) 09:00~18:00, 외근 시 직퇴 가능"),
        perks=_items("영업 인센티브 (분기별) | 차량 유지비 및 유류비 지원 | 법인 휴대폰 지급"),
        salary=3200,
        process="서류전형 → 1차 면접 → 2차 임원 면접 → 최종합격",
    ),
    Role(
        area="회계",
        industry="제조/유통",
        positions=_items("회계 담당자 | 재무회계 담당 | 세무회계 사원 | 경리 사무원"),
        departments=_items("재무팀 | 회계팀 | 경영지원팀"),
        business=_items("""
            자동차 부품을 생산하는
            건설 자재를 유통하는
            프랜차이즈 외식 브랜드를 운영하는
        """),
        suffixes=_names("홀딩스=holdings | 산업=industry | 건설=construction | 유통=distribution"),
        duties=_items("""
            월 결산 및 연 결산 업무
            부가세 신고 및 법인세 신고 지원
            전표 입력 및 증빙 관리
            자금 입출금 관리 및 자금 일보 작성
            외부 회계감사 대응
            급여 및 4대보험 업무
        """),
        requirements=_items("""
            회계 실무 경험
            더존(Douzone) ERP 사용 가능자
            엑셀 활용 능력
            상경계열 전공자
        """),
        preferred=_items("""
            전산회계 1급 또는 전산세무 2급 이상 자격증 소지자
            KICPA 또는 AICPA 수험 경험
            IFRS 결산 경험
            동종 업계 경험자
        """),
        skills=_items("Excel | 더존 iCUBE | SAP | ERP"),
        documents=_items("자격증 사본 | 경력증명서 (경력자)"),
        hours=_items("""
            주 5일 (월~금) 09:00~18:00
            주 5일 (월~금) 08:30~17:30, 결산 기간 연장근무 있음
        """),
        perks=_items("자격증 취득 축하금 | 명절 상여금"),
        salary=3000,
        process="서류전형 → 실무 면접 → 임원 면접 → 최종합격",
    ),
    Role(
        area="간호",
        industry="의료/병원",
        positions=_items("병동 간호사 | 수술실 간호사 | 외래 간호사 | 응급실 간호사 | 간호조무사"),
        departments=_items("간호부 | 수술실 | 외래진료부"),
        business=_items("""
            지역 주민의 건강을 책임지는
            척추·관절 치료를 전문으로 하는
            요양 및 재활 치료를 전문으로 하는
        """),
        suffixes=_names("병원=hospital | 메디컬센터=medical | 재활병원=rehab | 요양병원=care"),
        duties=_items("""
            입원 환자 간호 및 투약 관리
            수술 전·후 환자 관리
            외래 진료 보조 및 환자 안내
            활력징후 측정 및 간호 기록 작성
            감염 관리 및 의료기기 점검
            보호자 상담 및 퇴원 교육
        """),
        requirements=_items("""
            간호사 면허 소지자
            3교대 근무 가능자
            성실하고 책임감 있는 분
            병원 근무 경험 (신규 간호사 지원 가능)
        """),
        preferred=_items("""
            중환자실 또는 응급실 경력자
            BLS 또는 ACLS 자격 보유자
            인근 거주자
            EMR 사용 경험자
        """),
        skills=_items("EMR | BLS | ACLS"),
        documents=_items("간호사 면허증 사본 | 졸업증명서 | 경력증명서 (경력자)"),
        hours=_items("""
            3교대 (Day 07:00~15:00 / Evening 14:30~22:30 / Night 22:00~07:30)
            2교대 (주간 08:00~20:00 / 야간 20:00~08:00)
            주 5일 (월~금) 08:30~17:30, 토요일 격주 근무
        """),
        perks=_items("""
            나이트 근무 수당 별도 지급
            간호사 기숙사 제공
            본인 및 가족 진료비 감면
            신규 간호사 프리셉터 교육
        """),
        salary=3400,
        process="서류전형 → 면접 → 채용 신체검사 → 최종합격",
        forms=("{name}", "의료법인 {name}"),
        noun="의료기관",
    ),
    Role(
        area="물류",
        industry="물류/운송",
        positions=_items(
            "물류센터 관리자 | 입출고 관리 담당 | 물류 운영 매니저 | 배송 관리 담당자"
        ),
        departments=_items("물류운영팀 | SCM팀 | 센터운영팀"),
        business=_items("""
            전국 당일배송 서비스를 운영하는
            콜드체인 물류센터를 운영하는
            해외 직구 물류를 대행하는
        """),
        suffixes=_names("로지스=logis | 물류=logistics | 익스프레스=express | 통운=transport"),
        duties=_items("""
            입고 및 출고 검수 관리
            WMS를 이용한 재고 관리 및 재고 실사
            배송 일정 관리 및 차량 배차
            작업자 인력 운영 및 안전 관리
            물류 비용 분석 및 개선
            반품 및 교환 처리 관리
        """),
        requirements=_items("""
            물류 관련 업무 경험
            지게차 운전기능사 소지자 (현장직)
            엑셀 활용 가능자
            교대 근무 가능자
        """),
        preferred=_items("""
            물류관리사 자격증 보유자
            WMS/TMS 사용 경험
            대형 물류센터 근무 경험
            인근 거주자
        """),
        skills=_items("WMS | TMS | Excel | ERP"),
        documents=_items("자격증 사본 | 운전면허증 사본"),
        hours=_items(
            "주 5일 주간 (08:00~17:00) | 주 5일 야간 (21:00~06:00), 야간 수당 별도 | 4조 2교대"
        ),
        perks=_items("통근버스 운행 | 야간 근무 식사 제공 | 장기근속 포상"),
        salary=2800,
        process="서류전형 → 현장 면접 → 최종합격",
    ),
    Role(
        area="생산",
        industry="제조",
        positions=_items(
            "생산직 사원 | 생산관리 담당자 | 품질관리(QC) 담당자 | 설비 보전 엔지니어"
        ),
        departments=_items("생산팀 | 품질보증팀 | 설비기술팀"),
        business=_items("""
            2차전지 소재를 생산하는
            반도체 장비 부품을 가공하는
            자동차 내장재를 생산하는
        """),
        suffixes=_names("정밀=precision | 산업=industry | 화학=chemical | 전자=electronics"),
        duties=_items("""
            생산 라인 운영 및 제품 조립
            생산 계획 수립 및 일정 관리
            수입 검사 및 출하 검사
            설비 점검 및 예방 보전
            불량 원인 분석 및 개선 활동
            작업 표준서 작성 및 현장 5S 관리
        """),
        requirements=_items("""
            교대 근무 가능자
            제조 현장 근무 경험
            기계 또는 전기 관련 전공자 (생산관리·설비직)
            성실하고 꼼꼼한 분
        """),
        preferred=_items("""
            품질경영기사 또는 생산자동화 관련 자격증 소지자
            ISO 9001/IATF 16949 실무 경험
            PLC 프로그램 이해자
            지게차 운전기능사 소지자
        """),
        skills=_items("ERP | MES | PLC | AutoCAD | Excel"),
        documents=_items("자격증 사본 | 졸업증명서"),
        hours=_items("""
            주간 2교대 (08:00~20:00 / 20:00~08:00)
            주 5일 08:30~17:30, 잔업 및 특근 있음
            3조 2교대
        """),
        perks=_items("기숙사 제공 | 통근버스 운행 | 작업복 및 안전화 지급 | 중식 및 석식 제공"),
        salary=2900,
        process="서류전형 → 면접 → 채용 신체검사 → 최종합격",
    ),
    Role(
        area="교육",
        industry="교육",
        positions=_items("수학 강사 | 영어 강사 | 코딩 교육 강사 | 교육 콘텐츠 기획자"),
        departments=_items("교육사업부 | 콘텐츠개발팀 | 강사팀"),
        business=_items("""
            초·중등 입시 학원을 운영하는
            성인 대상 IT 교육 과정을 운영하는
            온라인 학습 콘텐츠를 개발하는
        """),
        suffixes=_names("에듀=edu | 학원=academy | 아카데미=academy | 러닝=learning"),
        duties=_items("""
            담당 과목 수업 진행 및 학생 관리
            커리큘럼 및 교재 개발
            학부모 상담 및 학습 리포트 작성
            온라인 강의 콘텐츠 기획 및 촬영
            수강생 과제 피드백 및 질의응답
            모의고사 및 평가 문항 출제
        """),
        requirements=_items("""
            해당 과목 강의 경험
            관련 전공 학사 이상
            원활한 의사소통 능력
            학생 지도에 대한 열정
        """),
        preferred=_items("""
            교원자격증 소지자
            대형 학원 강의 경력자
            온라인 강의 촬영 경험자
            Python 또는 웹 개발 실무 경험 (코딩 강사)
        """),
        skills=_items("PowerPoint | Zoom | Notion | Python"),
        documents=_items("강의 계획서 | 시범 강의 자료 | 졸업증명서"),
        hours=_items(
            "화~토 14:00~22:00 | 월~금 13:00~22:00 (주 2회 오전 회의) | 주 5일 09:00~18:00"
        ),
        perks=_items("강의 성과 인센티브 | 교재 및 도서 지원 | 방학 기간 휴가"),
        salary=2800,
        process="서류전형 → 시범 강의 → 원장 면접 → 최종합격",
        noun="교육 기업",
    ),
    Role(
        area="고객 상담",
        industry="서비스",
        positions=_items("고객상담 매니저 | CS 상담원 | VOC 분석 담당자 | 고객경험(CX) 매니저"),
        departments=_items("고객센터 | CX팀 | 고객지원팀"),
        business=_items("""
            여행 예약 플랫폼을 운영하는
            통신 서비스를 판매하는
            렌탈 가전을 판매하는
        """),
        suffixes=_names("서비스=service | 트래블=travel | 텔레콤=telecom | 렌탈=rental"),
        duties=_items("""
            전화, 채팅, 이메일 고객 문의 응대
            불만 고객 응대 및 클레임 처리
            VOC 수집 및 개선 사항 제안
            상담 매뉴얼 작성 및 업데이트
            신규 상담원 교육 지원
            주문·예약 변경 및 환불 처리
        """),
        requirements=_items("""
            고객 응대 경험
            기본적인 PC 활용 능력 (타자 200타 이상)
            친절하고 차분한 응대 태도
            주말 교대 근무 가능자
        """),
        preferred=_items("""
            콜센터 또는 CS 경력자
            영어 또는 일본어 상담 가능자
            Zendesk 등 상담 툴 사용 경험
            CS 리더 경험
        """),
        skills=_items("Zendesk | Excel | 채널톡 | Slack"),
        documents=_items("경력증명서 (경력자)"),
        hours=_items("""
            주 5일 09:00~18:00 (주말 교대 근무, 평일 대체 휴무)
            주 5일 (월~금) 10:00~19:00
        """),
        perks=_items("상담 성과 인센티브 | 감정노동 보호 휴가"),
        salary=2700,
        process="서류전형 → 전화 인터뷰 → 대면 면접 → 최종합격",
    ),
)

_COMPANY_PREFIXES = _names("""
    한빛=hanbit | 누리=nuri | 새봄=saebom | 다온=daon | 미르=mir | 가람=garam | 해솔=haesol
    라온=raon | 도담=dodam | 온누리=onnuri | 푸른숲=pureunsup | 하늘길=haneulgil | 별빛=byeolbit
    청솔=cheongsol | 금빛=geumbit | 세움=seum | 바른=bareun | 이음=ieum | 나래=narae
    한결=hangyeol | 여울=yeoul | 아라=ara | 늘봄=neulbom | 솔빛=solbit | 큰길=keungil
    새벽별=saebyeokbyeol | 모아=moa | 올림=ollim | 그린웨이=greenway | 넥스트원=nextone
    블루오션=blueocean | 코어브릿지=corebridge
""")


def _places(text: str) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """Lines of "address start = phone area code = street, street" -> tuples."""
    rows = (line.split(" = ") for line in _items(text))
    return tuple((place, code, tuple(streets.split(", "))) for place, code, streets in rows)


_PLACES = _places("""
    서울 강남구 = 02 = 테헤란로, 강남대로, 선릉로, 논현로
    서울 서초구 = 02 = 서초대로, 반포대로
    서울 마포구 = 02 = 월드컵북로, 양화로, 독막로
    서울 영등포구 = 02 = 여의대로, 국제금융로, 영중로
    서울 구로구 = 02 = 디지털로, 경인로
    서울 성동구 = 02 = 성수이로, 아차산로, 왕십리로
    서울 종로구 = 02 = 종로, 율곡로, 대학로
    서울 송파구 = 02 = 올림픽로, 송파대로
    경기 성남시 분당구 = 031 = 판교역로, 대왕판교로, 분당내곡로
    경기 수원시 영통구 = 031 = 광교로, 덕영대로
    경기 화성시 = 031 = 동탄대로, 동탄첨단산업1로
    경기 평택시 = 031 = 산단로, 평택항로
    경기 이천시 = 031 = 부발읍 경충대로, 마장면 덕평로
    경기 고양시 일산동구 = 031 = 중앙로, 정발산로
    인천 연수구 = 032 = 컨벤시아대로, 아트센터대로
    인천 서구 = 032 = 청라커낼로, 가좌로
    부산 해운대구 = 051 = 센텀중앙로, 해운대로, 센텀동로
    부산 강서구 = 051 = 녹산산업중로, 신호산단로
    부산 부산진구 = 051 = 중앙대로, 서면로
    대구 수성구 = 053 = 달구벌대로, 알파시티1로
    대구 달성군 = 053 = 테크노중앙대로, 현풍로
    대전 유성구 = 042 = 대덕대로, 엑스포로, 테크노중앙로
    광주 북구 = 062 = 첨단과기로, 무등로
    울산 남구 = 052 = 삼산로, 산업로
    경남 창원시 성산구 = 055 = 창원대로, 공단로
    충북 청주시 흥덕구 = 043 = 오송생명로, 직지대로
    충남 천안시 서북구 = 041 = 번영로, 백석로
    전북 전주시 덕진구 = 063 = 기린대로, 팔복로
    강원 춘천시 = 033 = 중앙로, 퇴계로
    제주 제주시 = 064 = 첨단로, 연삼로
    세종 나성동 = 044 = 한누리대로, 갈매로
""")

_EMPLOYMENT = _items("""
    정규직
    정규직
    정규직 (수습 3개월)
    정규직 (수습 3개월, 급여 100% 지급)
    계약직 (1년, 연장 가능)
    인턴 (3개월, 정규직 전환형)
""")
_EDUCATION = _items("학력 무관 | 고졸 이상 | 초대졸 이상 | 대졸 이상 (4년) | 대졸 이상")
_BENEFITS = _items("""
    4대보험 및 퇴직연금
    연차 외 리프레시 휴가
    점심 식대 지원
    연 1회 종합 건강검진
    경조사비 및 경조휴가
    명절 선물 및 상여금
    도서 구입비 무제한 지원
    교육비 및 자격증 취득 지원
    자기계발비 월 10만원
    생일 조기 퇴근 및 선물
    사내 카페 및 간식 무료
    자녀 학자금 지원
    단체 상해보험 가입
    주차 지원
    장기근속 휴가 및 포상
    야근 식대 및 교통비 지원
""")
_SURNAMES = "김이박최정강조윤장임한오서신권황안송류홍"
_GIVEN = _items(
    "민준 | 서연 | 지훈 | 수빈 | 현우 | 지은 | 도윤 | 하은 | 유진 | 예린 | 성민 | 다은"
    " | 준호 | 소영 | 태현 | 은지 | 민서 | 재원 | 혜진 | 상우"
)
_STAFF_TITLES = _items("매니저 | 대리 | 과장 | 책임 | 팀장 | 선임")
_MAIL_USERS = _items("recruit | hr | jobs | career | insa | people")
_BULLETS = ("- ", "• ", "ㆍ", "· ", "* ")
_WEEKDAYS = "월화수목금토일"

# question type -> ways a user asks it; the answer's layout depends on the type only
QUESTIONS: dict[str, tuple[str, ...]] = {
    "summary": _items("""
        이 구인 정보를 요약해줘.
        이 채용 공고를 한눈에 보기 쉽게 요약해줘.
        공고 내용 간단히 요약 부탁해요.
        이 공고 핵심만 짧게 알려줘.
    """),
    "key": _items("""
        이 채용 공고의 핵심 정보를 정리해줘.
        핵심 정보 정리해줘.
        회사, 포지션, 근무지, 급여, 마감일을 정리해줘.
        체크리스트와 연락처 중심으로 정리해줘.
    """),
    "requirements": _items("""
        지원 자격 알려줘.
        이 포지션에 지원하려면 어떤 자격이 필요해?
        자격 요건과 우대 사항을 정리해줘.
        신입도 지원할 수 있어? 자격 요건을 알려줘.
    """),
    "contact": _items("""
        연락처가 있다면 함께 정리해줘.
        지원은 어디로 하면 돼?
        담당자 연락처와 지원 방법 알려줘.
        핵심 연락처와 주의사항을 정리해줘.
    """),
    "checklist": _items("""
        지원 준비 체크리스트 만들어줘.
        지원하기 전에 준비할 것들을 정리해줘.
        지원 전 확인할 사항을 체크리스트로 알려줘.
    """),
    "conditions": _items("""
        근무 조건 알려줘.
        급여랑 근무 시간, 복지 정리해줘.
        근무지와 처우 조건을 알려줘.
        이 회사 복리후생은 어때?
    """),
}


# ---------------------------------------------------------------------------------------------
# Drawing one posting


@dataclass
class Posting:
    """The drawn facts of one posting; the DOC and the ANSWER are both written from these."""

    role: Role
    company: str
    title: str
    position: str
    department: str
    intro: str
    location: str
    employment: str
    salary: str
    experience: str
    education: str
    hours: str
    deadline: str
    duties: list[str]
    requirements: list[str]
    preferred: list[str]
    skills: list[str]
    benefits: list[str]
    documents: list[str]
    contacts: dict[str, str]  # label -> value, in TEL/EMAIL/WEB order
    how_to_apply: str
    hiring_count: str
    bullet: str


def draw_posting(rng: random.Random) -> Posting:
    role = rng.choice(ROLES)
    (prefix, prefix_en), (suffix, suffix_en) = (
        rng.choice(_COMPANY_PREFIXES),
        rng.choice(role.suffixes),
    )
    name = prefix + suffix
    company = rng.choice(role.forms).format(name=name)
    domain = f"{prefix_en}{suffix_en}.{rng.choice(('co.kr', 'com', 'kr'))}"
    position = rng.choice(role.positions)
    employment = rng.choice(_EMPLOYMENT)
    experience, years = ("신입", 0) if employment.startswith("인턴") else _experience(rng)
    place, area_code, streets = rng.choice(_PLACES)
    requirements = _pick(rng, role.requirements, 2, 4)
    if years:
        requirements.insert(0, f"{role.area} 분야 경력 {years}년 이상")
    contacts = _contacts(rng, domain, area_code)
    return Posting(
        role=role,
        company=company,
        position=position,
        title=_title(rng, company, position, experience, place),
        department=rng.choice(role.departments),
        intro=_intro(rng, name, role),
        location=f"{place} {rng.choice(streets)} {rng.randint(1, 400)}"
        + rng.choice(("", f", {rng.randint(2, 20)}층", f" {prefix}빌딩 {rng.randint(2, 12)}층")),
        employment=employment,
        salary=_salary(rng, role, years),
        experience=experience,
        education=rng.choice(_EDUCATION),
        hours=rng.choice(role.hours),
        deadline=_deadline(rng),
        duties=_pick(rng, role.duties, 3, 5),
        requirements=requirements,
        preferred=_pick(rng, role.preferred, 2, 3),
        skills=_pick(rng, role.skills, 2, 5),
        benefits=_pick(rng, _BENEFITS + role.perks, 4, 7),
        documents=["이력서", *_pick(rng, role.documents, 1, len(role.documents))],
        contacts=contacts,
        how_to_apply=_how_to_apply(rng, contacts),
        hiring_count=rng.choice(("", "", "0명", "1명", "2명", "00명", "O명", "3명")),
        bullet=rng.choice(_BULLETS),
    )


def _pick(rng: random.Random, pool: Sequence[str], lo: int, hi: int) -> list[str]:
    """A few distinct items, kept in the pool's order so lists read naturally."""
    chosen = set(rng.sample(range(len(pool)), rng.randint(lo, min(hi, len(pool)))))
    return [item for i, item in enumerate(pool) if i in chosen]


def _experience(rng: random.Random) -> tuple[str, int]:
    kind = rng.randrange(5)
    if kind == 0:
        return "신입", 0
    if kind == 1:
        return "신입/경력", 0
    if kind == 2:
        return "경력 무관", 0
    years = rng.choice((1, 2, 3, 3, 5, 5, 7, 10))
    if kind == 3:
        return f"경력 {years}년 이상", years
    return f"경력 {years}~{years + rng.choice((3, 5))}년", years


def _salary(rng: random.Random, role: Role, years: int) -> str:
    lo = round((role.salary + years * rng.randint(150, 400)) / 100) * 100
    hi = lo + rng.choice((600, 1000, 1500, 2000))
    kind = rng.randrange(8)
    if kind < 3:
        return f"연봉 {lo:,}만원~{hi:,}만원"
    if kind == 3:
        return f"연봉 {lo:,}만원 이상 (경력에 따라 협의)"
    if kind == 4:
        return f"월 {round(lo / 12 / 10) * 10:,}만원 (세전)"
    if kind == 5:
        return f"연봉 {lo:,}만원~{hi:,}만원 (성과급 별도)"
    return rng.choice(("면접 후 결정", "회사 내규에 따름", "협의 후 결정 (직전 연봉 고려)"))


def _deadline(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return rng.choice(("상시채용", "채용 시 마감", "상시채용 (채용 시 조기 마감)"))
    day = date(2025, 1, 6) + timedelta(days=rng.randrange(540))
    if rng.random() < 0.5:
        return day.isoformat()
    return f"{day.year}년 {day.month}월 {day.day}일({_WEEKDAYS[day.weekday()]}) 23:59"


def _title(rng: random.Random, company: str, position: str, experience: str, place: str) -> str:
    city = place.split()[0]
    return rng.choice(
        (
            f"[{company}] {position} 채용",
            f"[{company}] {position} ({experience}) 모집",
            f"{company} {position} 신규 채용",
            f"[{city}] {company} {position} 채용",
            f"[{company}] {position} 채용 ({experience})",
        )
    )


def _intro(rng: random.Random, name: str, role: Role) -> str:
    topic = "은" if (ord(name[-1]) - 0xAC00) % 28 else "는"  # 받침 decides the particle
    founded, business = rng.randint(1995, 2022), rng.choice(role.business)
    series = rng.choice(("시리즈 A", "시리즈 B", "시리즈 C"))
    sentences = [
        f"{name}{topic} {founded}년 설립된, {business} {role.noun}입니다.",
        rng.choice(
            (
                f"현재 {rng.randint(12, 900)}명의 임직원이 함께하고 있습니다.",
                f"{series} 투자를 유치하며 빠르게 성장하고 있습니다.",
                f"지난해 매출 {rng.randint(30, 2000)}억원을 달성했습니다.",
                "고객의 신뢰를 가장 중요한 가치로 여깁니다.",
            )
        ),
        rng.choice(
            (
                "함께 성장할 동료를 찾습니다.",
                "열정 있는 인재의 많은 지원 바랍니다.",
                f"{role.area} 분야에서 함께 일할 분을 모십니다.",
                "",
            )
        ),
    ]
    return " ".join(s for s in sentences if s)


def _contacts(rng: random.Random, domain: str, area_code: str) -> dict[str, str]:
    contacts: dict[str, str] = {}
    if rng.random() < 0.5:
        staff = rng.choice(_SURNAMES) + rng.choice(_GIVEN)
        contacts["담당자"] = f"인사팀 {staff} {rng.choice(_STAFF_TITLES)}"
    if rng.random() < 0.6:
        middle = rng.randint(1000, 9999) if area_code == "02" else rng.randint(200, 999)
        contacts["TEL"] = f"{area_code}-{middle}-{rng.randint(1000, 9999)}"
    web = rng.random() < 0.7
    if not web or rng.random() < 0.5:
        contacts["EMAIL"] = f"{rng.choice(_MAIL_USERS)}@{domain}"
    if web:
        contacts["WEB"] = rng.choice(
            (
                f"https://careers.{domain}",
                f"https://www.{domain}/recruit",
                f"https://{domain}/careers/{rng.randint(100, 9999)}",
            )
        )
    return contacts


def _how_to_apply(rng: random.Random, contacts: dict[str, str]) -> str:
    if "WEB" in contacts and ("EMAIL" not in contacts or rng.random() < 0.5):
        return f"채용 홈페이지({contacts['WEB']})에서 온라인 지원"
    return f"이메일 지원 ({contacts['EMAIL']}), 제목에 '지원 포지션_이름' 기재"


# ---------------------------------------------------------------------------------------------
# Writing it down: the DOC through the shared template, the ANSWER from the same facts


def posting_record(p: Posting) -> dict[str, str]:
    """The posting as a record for `render_posting` (so the DOC has the corpus reader's layout)."""

    def bullets(items: list[str]) -> str:
        return "\n".join(p.bullet + item for item in items)

    return {
        "title": p.title,
        "company": p.company,
        "position": p.position,
        "department": p.department,
        "industry": p.role.industry,
        "location": p.location,
        "employment_type": p.employment,
        "salary": p.salary,
        "experience": p.experience,
        "education": p.education,
        "work_hours": p.hours,
        "hiring_count": p.hiring_count,
        "deadline": p.deadline,
        "intro": p.intro,
        "duties": bullets(p.duties),
        "requirements": bullets(p.requirements),
        "preferred": bullets(p.preferred),
        "benefits": bullets(p.benefits),
        "process": p.role.process,
        "application_docs": ", ".join(p.documents),
        "how_to_apply": p.how_to_apply,
        "skills": ", ".join(p.skills),
        "contact_person": p.contacts.get("담당자", ""),
        "phone": p.contacts.get("TEL", ""),
        "email": p.contacts.get("EMAIL", ""),
        "url": p.contacts.get("WEB", ""),
    }


def _lines(items: Sequence[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def _numbered(items: Sequence[str]) -> str:
    return "\n".join(f"  - ({i}) {item}" for i, item in enumerate(items, 1))


def _summary(p: Posting) -> str:
    facts = (
        ("회사", p.company),
        ("포지션", p.position),
        ("위치", p.location),
        ("고용형태", p.employment),
        ("급여", p.salary),
        ("마감일", p.deadline),
    )
    return "요약:\n" + _lines([f"{k}: {v}" for k, v in facts])


def _contact_block(p: Posting) -> str:
    return "연락처(공공정보):\n" + _lines([f"{k}: {v}" for k, v in p.contacts.items()])


def _checklist(p: Posting) -> str:
    todo = [
        "이력서 준비",
        f"지원 방법: {p.how_to_apply}",
        f"필요 기술 확인 ({', '.join(p.skills)})",
    ]
    caution = (
        [f"마감일({p.deadline}) 확인 필수"]
        if p.deadline[0].isdigit()
        else [f"{p.deadline}: 조기 마감될 수 있으니 빨리 지원"]
    )
    caution.append("자격 요건 충족 여부 확인")
    return (
        f"체크리스트:\n- 해야 할 일:\n{_numbered(todo)}\n- 준비물:\n{_numbered(p.documents)}"
        f"\n- 주의사항:\n{_numbered(caution)}"
    )


def _newcomer_line(p: Posting) -> str:
    if p.experience in ("신입", "신입/경력", "경력 무관"):
        return f"네, 신입도 지원할 수 있습니다 (경력: {p.experience})."
    return f"아니요, 이 포지션은 {p.experience} 조건입니다."


def build_answer(intent: str, question: str, p: Posting) -> str:
    """The answer to one question type, using only facts written in the posting."""
    if intent == "summary":
        return f"{_summary(p)}\n\n주요 업무: {', '.join(p.duties)}"
    if intent == "key":
        detail = (
            f"상세 설명:\n이 문서는 {p.company}의 {p.position} 채용 공고입니다.\n"
            f"주요 업무: {', '.join(p.duties)}\n자격 요건: {', '.join(p.requirements)}\n"
            "연락처 정보는 변경될 수 있으므로 공식 웹사이트에서 최신 정보를 확인하는 것이 좋습니다."
        )
        return "\n\n".join((_summary(p), _checklist(p), _contact_block(p), detail))
    if intent == "requirements":
        head = _newcomer_line(p) + "\n\n" if "신입" in question else ""
        return (
            f"{head}지원 자격:\n"
            + _lines([f"경력: {p.experience}", f"학력: {p.education}", *p.requirements])
            + f"\n\n우대 사항:\n{_lines(p.preferred)}\n\n필요 기술: {', '.join(p.skills)}"
        )
    if intent == "contact":
        return (
            f"{_contact_block(p)}\n\n지원 방법: {p.how_to_apply}\n마감일: {p.deadline}\n\n"
            "주의사항: 연락처 정보는 변경될 수 있으니 공식 채용 페이지에서 최신 정보를 확인하세요."
        )
    if intent == "checklist":
        return f"{_checklist(p)}\n\n채용 절차: {p.role.process}"
    conditions = (
        ("위치", p.location),
        ("고용형태", p.employment),
        ("급여", p.salary),
        ("근무시간", p.hours),
    )
    return (
        f"근무 조건:\n{_lines([f'{k}: {v}' for k, v in conditions])}\n\n"
        f"복리후생:\n{_lines(p.benefits)}"
    )


def generate_demo_corpus(n: int, seed: int) -> Iterator[str]:
    """``n`` distinct QA-format examples, the same for the same seed (a prefix for a smaller n)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    while len(seen) < n:
        posting = draw_posting(rng)
        intent = rng.choice(tuple(QUESTIONS))
        question = rng.choice(QUESTIONS[intent])
        text = format_qa_document(
            question,
            render_posting(posting_record(posting)),
            build_answer(intent, question, posting),
        )
        if text not in seen:  # collisions are near-impossible; this makes them impossible
            seen.add(text)
            yield text


def write_demo_corpus(path: str | os.PathLike[str], n: int, seed: int) -> Path:
    """Write ``n`` examples to ``path`` atomically (a crash never leaves half a corpus)."""
    with atomic_open(path, "w") as f:
        for text in generate_demo_corpus(n, seed):
            f.write(text + BLOCK_SEPARATOR)
    return Path(path)


def run_demo_data(cfg: DemoDataConfig) -> Path:
    """`jobgpt demo-data`: write the synthetic corpus to ``cfg.out``."""
    out = Path(cfg.out)
    if out.exists() and not cfg.overwrite:
        raise ConfigError(
            f"{out} already exists (it may be your own corpus)",
            "pass --overwrite to replace it, or --out to write somewhere else",
        )
    write_demo_corpus(out, cfg.n, cfg.seed)
    size = out.stat().st_size
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"
    print(f"wrote {cfg.n:,} synthetic postings ({shown}) to {out}")
    return out


def ensure_default_corpus(patterns: Sequence[str]) -> None:
    """Write the demo corpus to data/samples.txt if that default input is asked for and missing.

    Only the untouched default triggers this: a path the user typed that does not exist must stay
    an error, never be silently replaced by synthetic data.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if [Path(p) for p in patterns] != [Path(DEFAULT_CORPUS)] or Path(DEFAULT_CORPUS).exists():
        return
    cfg = DemoDataConfig()
    write_demo_corpus(DEFAULT_CORPUS, cfg.n, cfg.seed)
    logger.info(
        "%s not found: wrote the built-in demo corpus there (%s synthetic Korean postings, "
        "seed %d); pass --input to use your own text",
        DEFAULT_CORPUS,
        f"{cfg.n:,}",
        cfg.seed,
    )
